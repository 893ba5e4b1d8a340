"""`MODULE:FUNCTION` -> the executor's function, with errors that say what is wrong."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import cast

from processors.executor.executor import Handler
from schemas.errors import OrchestralError


class HandlerNotFound(OrchestralError):
    """`MODULE:FUNCTION` does not name an async function."""


def load_handler(spec: str) -> Handler:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise HandlerNotFound(f"{spec!r}: expected MODULE:FUNCTION, e.g. mypackage.agent:reply")
    if os.getcwd() not in sys.path:  # the user's module, from where they run the command
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerNotFound(f"cannot import {module_name!r}: {exc}") from None
    handler = getattr(module, name, None)
    if handler is None:
        raise HandlerNotFound(f"module {module_name!r} has no {name!r}")
    if not inspect.iscoroutinefunction(handler):
        raise HandlerNotFound(f"{spec} must be an async function taking one Turn")
    return cast(Handler, handler)
