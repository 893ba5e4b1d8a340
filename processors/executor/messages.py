"""Stored events as an executor reads them: the record and its text (seed-semantics §8.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# The keys the seed looks under, in order, for a payload's text.
_TEXT_KEYS = ("content", "message", "text")


@dataclass(frozen=True, slots=True)
class Message:
    """One stored event: the record as the store holds it, and its text."""

    event: dict[str, Any]
    text: str

    @property
    def type(self) -> str:
        return str(self.event["type"])

    @property
    def seq(self) -> int:
        return int(self.event["seq"])


def message_of(event: dict[str, Any]) -> Message:
    return Message(event, event_text(event))


def event_text(event: dict[str, Any]) -> str:
    """The seed's rule: external events, traces and artifacts say what they are."""
    kind = event.get("type")
    text = payload_text(event.get("payload"))
    if kind == "external_event":
        return f"external:{event.get('kind')} {text}"
    if kind == "system_trace":
        return f"trace:{event.get('level')} {text}"
    if kind == "artifact":
        return f"artifact:{event.get('reference_id')}"
    return text


def payload_text(payload: Any) -> str:
    """A string as it is; else the first string under content, message or text; else JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        for key in _TEXT_KEYS:
            value = payload.get(key)
            if isinstance(value, str):
                return value
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
