"""Replays are recognised by position *and* topic incarnation; anything else is applied as new.

Before: a record at or below a thread's applied offset was always taken for a replay; when its
outputs were not in the buffer (a recreated topic, a wiped cluster) it produced nothing at all.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processors.core import Limits, Output, Position, ThreadState, apply_in_place
from processors.core.replay_rule import replay_missing
from schemas.records import parse_input

LIMITS = Limits()
TOPIC = LIMITS.events_topic


def message(n: int) -> Any:
    return parse_input(
        {
            "type": "user_input",
            "thread_id": "t1",
            "payload": {"message": f"m{n}"},
            "event_id": f"e{n}",
            "timestamp": "2026-12-01T10:00:00Z",
        }
    )


def outcome(outputs: list[Output]) -> dict[str, Any]:
    [record] = [r for t, r in outputs if r.get("type") == "outcome"]
    return record


def feed(state: ThreadState, offsets: list[int], epoch: int | None, first: int = 0) -> list[Any]:
    return [
        outcome(apply_in_place(state, message(first + i), Position(TOPIC, 0, o, epoch), LIMITS))
        for i, o in enumerate(offsets)
    ]


@given(st.integers(1, 20), st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_a_new_incarnation_of_the_topic_is_never_taken_for_a_replay(
    n: int, old: int, new: int
) -> None:
    state = ThreadState("t1")
    feed(state, list(range(n)), old)
    answers = feed(state, list(range(n)), new, first=n)  # the same offsets, new records
    if old == new:
        assert all(a["source_event_id"].startswith("e") for a in answers)
        assert [a["source_event_id"] for a in answers] == [f"e{i}" for i in range(n)]  # replays
    else:
        assert [a["source_event_id"] for a in answers] == [f"e{n + i}" for i in range(n)]
        assert [a["status"] for a in answers] == ["started"] * n
    assert ThreadState.from_bytes(state.to_bytes()).epoch == new


@given(st.integers(2, 20))
def test_a_replay_whose_outputs_are_gone_is_applied_as_new(n: int) -> None:
    state = ThreadState("t1")
    feed(state, list(range(n)), 7)
    state.recent.clear()  # e.g. trimmed: the buffer no longer holds them
    position = Position(TOPIC, 0, 0, 7)
    assert replay_missing(state, position)
    [answer] = feed(state, [0], 7, first=100)
    assert (answer["source_event_id"], answer["status"]) == ("e100", "started")
    # Its outputs are buffered now, at its own offset: a re-read repeats them.
    assert not replay_missing(state, position)
    assert feed(state, [0], 7, first=200)[0] == answer


def test_a_true_replay_is_repeated_identically() -> None:
    state = ThreadState("t1")
    first = feed(state, [0, 1, 2], 7)
    assert not replay_missing(state, Position(TOPIC, 0, 1, 7))
    assert feed(state, [1, 2], 7, first=50) == first[1:]


def test_a_state_saved_before_epochs_trusts_its_offsets_and_keeps_its_buffer() -> None:
    state = ThreadState("t1")
    first = feed(state, [0, 1], None)
    legacy = ThreadState.from_bytes(state.to_json_bytes()[: -len(b",null]")] + b"]")
    assert legacy.epoch is None
    assert feed(legacy, [0, 1], 7, first=50) == first  # replays, under the worker's epoch
    assert feed(legacy, [2], 7, first=60)[0]["status"] == "started"
    assert legacy.epoch == 7
