"""One exception hierarchy for the wire layer, by cause (after httpx's `_exceptions.py`).

    OrchestralError
    ├── DecodeError        bytes that are not a valid input record (goes to the DLQ)
    └── ConfigurationError settings that cannot work (raised at start-up)

`DecodeError.reason` is short, single-line and safe to put in a Kafka header.
"""

from __future__ import annotations


class OrchestralError(Exception):
    """Base class of every error this project raises on purpose."""


class DecodeError(OrchestralError):
    """A record could not be decoded or does not match the contract's schema."""

    def __init__(self, reason: str, *, thread_id: str | None = None) -> None:
        # Headers are single-line; keep the reason bounded so a huge bad value cannot bloat it.
        self.reason = " ".join(reason.split())[:500]
        # The thread id, when it could be read, so the caller can still answer `invalid`.
        self.thread_id = thread_id
        super().__init__(self.reason)


class ConfigurationError(OrchestralError):
    """A setting is invalid; the message names the setting."""
