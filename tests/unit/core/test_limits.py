"""The core's knobs: its defaults are the settings' (the contract's), and it reads no config."""

from __future__ import annotations

import ast
from pathlib import Path

from config.settings import Settings
from processors.core import Limits

CORE = Path(__file__).resolve().parents[3] / "processors" / "core"


def test_the_limits_defaults_are_the_settings_defaults() -> None:
    assert Settings.model_construct().limits() == Limits()


def test_settings_become_limits_field_by_field() -> None:
    settings = Settings.model_construct(default_policy="queue", max_queue_depth=3, dedupe_window=7)
    limits = settings.limits()
    assert (limits.default.name, limits.default.max_queue_depth, limits.dedupe_window) == (
        "queue",
        3,
        7,
    )


def test_the_core_imports_no_configuration() -> None:
    for module in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("config"), module.name
