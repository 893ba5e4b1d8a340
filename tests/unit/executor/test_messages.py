"""The seed's payload-to-text rule (seed-semantics §8.1), as turns get it."""

from __future__ import annotations

from typing import Any

import pytest

from processors.executor import event_text, payload_text


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ("plain", "plain"),
        ({"content": "c", "message": "m"}, "c"),
        ({"message": "m", "text": "t"}, "m"),
        ({"text": "t"}, "t"),
        ({"content": 3, "text": "t"}, "t"),  # the first *string*
        ({"other": "x"}, '{"other":"x"}'),
        ([1, "é"], '[1,"é"]'),
        (None, "null"),
    ],
)
def test_payload_text(payload: Any, text: str) -> None:
    assert payload_text(payload) == text


def test_event_text_says_what_external_events_traces_and_artifacts_are() -> None:
    assert (
        event_text({"type": "external_event", "kind": "hook", "payload": "x"}) == "external:hook x"
    )
    assert event_text({"type": "system_trace", "level": "warn", "payload": {"text": "y"}}) == (
        "trace:warn y"
    )
    assert event_text({"type": "artifact", "reference_id": "r1", "payload": None}) == "artifact:r1"
    assert event_text({"type": "user_input", "payload": {"message": "hi"}}) == "hi"
