"""The command line's own errors (each one line on stderr; exit codes in exit_codes.py)."""

from __future__ import annotations

from schemas.errors import OrchestralError


class UsageError(OrchestralError):
    """A flag is missing, unknown or has a bad value."""


class NothingToSend(OrchestralError):
    """`send` found no record to produce."""


class UnknownThread(OrchestralError):
    """`thread` / `history` of a thread the cluster has never seen."""
