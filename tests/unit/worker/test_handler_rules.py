"""The worker's own dead-letter rules, as plain code: outputs over the size limit, and a failure
of the worker itself on a record. Neither stops the partition; neither changes the thread."""

from __future__ import annotations

from typing import Any

import pytest

from config.settings import Settings
from processors.core import Position, ThreadState
from processors.worker.handler import RecordHandler
from schemas.json_codec import JsonCodec

POSITION = Position("orchestral.events", 2, 40)


def value(payload: Any) -> bytes:
    record = {"type": "user_input", "thread_id": "t1", "payload": payload,
              "timestamp": "2026-12-01T10:00:00Z"}  # fmt: skip
    return JsonCodec().encode(record)


def handler(**overrides: Any) -> RecordHandler:
    return RecordHandler(Settings(events_topic="orchestral.events", **overrides))


def no_state(thread_id: str) -> ThreadState | None:
    return None


def headers(handled: Any) -> dict[str, bytes]:
    [dead] = [r for r in handled.records if r.topic == "orchestral.dlq"]
    return dict(dead.headers)


def test_a_record_within_the_limit_keeps_its_outputs_and_encoded_state() -> None:
    handled = handler().handle_safely(b"t1", value("hi"), POSITION, no_state)
    assert handled.status == "started" and not handled.too_large
    assert handled.state is not None and handled.state_bytes == handled.state.to_bytes()


def test_outputs_over_the_limit_are_dead_lettered_and_change_nothing() -> None:
    big = value("x" * 1_100_000)
    handled = handler(max_output_bytes=2**20).handle_safely(b"t1", big, POSITION, no_state)
    assert handled.too_large and handled.state_bytes is None and handled.thread_id is None
    error = headers(handled)["error"].decode()
    assert error.startswith("internal error: OutputTooLarge: an output of this record would be")
    assert "ORCHESTRAL_MAX_OUTPUT_BYTES (1048576)" in error
    assert [r.value for r in handled.records if r.topic == "orchestral.dlq"] == [big]


def test_a_failure_of_the_worker_itself_is_dead_lettered_with_its_position() -> None:
    def broken(thread_id: str) -> ThreadState | None:
        raise RuntimeError("the store is gone")

    handled = handler().handle_safely(b"t1", value("hi"), POSITION, broken)
    assert handled.internal_error and handled.state_bytes is None
    assert headers(handled) == {
        "error": b"internal error: RuntimeError: the store is gone",
        "source_topic": b"orchestral.events",
        "source_partition": b"2",
        "source_offset": b"40",
    }


@pytest.mark.parametrize("limit", [2**20, 2**21])
def test_the_state_counts_against_the_limit_too(limit: int) -> None:
    h = handler(max_output_bytes=limit)
    state = ThreadState("t1")
    state.seen = {f"e{i}": i for i in range(limit // 8)}  # a state larger than the limit
    handled = h.handle_safely(b"t1", value("hi"), POSITION, lambda _: state)
    assert handled.too_large
