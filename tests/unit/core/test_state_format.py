"""State format 2 (MessagePack, a format byte) and its replay buffer; format 1 still loads."""

from __future__ import annotations

import json
from typing import Any

from processors.core import Position, ThreadState, apply_in_place, default_limits
from processors.core.outputs import OUTCOMES, STORE, Output
from processors.core.packed_outputs import pack, unpack
from processors.core.state import JSON_STATE_FORMAT, STATE_FORMAT
from schemas.records import parse_input

TS = "2026-11-24T06:18:24.500Z"


def user_input(event_id: str, payload: Any, thread_id: str = "t1") -> dict[str, Any]:
    return {
        "type": "user_input",
        "thread_id": thread_id,
        "payload": payload,
        "timestamp": TS,
        "event_id": event_id,
    }


def applied(
    *records: dict[str, Any], committed: bool = False
) -> tuple[ThreadState, list[list[Output]]]:
    """`committed`: every record before the last is committed (the buffer holds only it)."""
    state, outputs = ThreadState(records[0]["thread_id"]), []
    for offset, record in enumerate(records):
        position, limits = Position("events", 0, offset), default_limits()
        done = offset if committed else None
        outputs.append(
            apply_in_place(state, parse_input(record), position, limits, committed_offset=done)
        )
    return state, outputs


def test_the_format_byte_comes_first_and_format_1_still_loads() -> None:
    state, _ = applied(user_input("u1", {"m": "hi"}), user_input("u2", {"m": "again"}))
    data = state.to_bytes()
    assert data[0] == STATE_FORMAT
    legacy = state.to_json_bytes()
    assert json.loads(legacy)[0] == JSON_STATE_FORMAT
    old = ThreadState.from_bytes(legacy)
    assert old.replay_outputs(1) == state.replay_outputs(1)
    assert (old.interactions, old.seen, old.seq) == (state.interactions, state.seen, state.seq)
    # Saved again, as format 2 (its stored events written twice: JSON kept no reference).
    assert ThreadState.from_bytes(old.to_bytes()).replay_outputs(1) == state.replay_outputs(1)
    assert ThreadState.from_bytes(data) == state


def test_a_replay_repeats_the_outputs_from_the_packed_buffer() -> None:
    state, outputs = applied(user_input("u1", {"m": "hi", "n": [1, 2.5, None, True]}))
    loaded = ThreadState.from_bytes(state.to_bytes())
    assert isinstance(loaded.recent[0], bytes)  # loading does not decode the buffer
    again = apply_in_place(
        loaded, parse_input(user_input("u1", {})), Position("events", 0, 0), default_limits()
    )
    assert again == outputs[0]
    stored = next(r for t, r in again if t == STORE)
    active = next(r for t, r in again if r.get("state") == "active")
    assert active["event"] == stored  # written once, as a reference


def test_the_stored_event_is_not_written_twice() -> None:
    payload = {"m": "x" * 1000}
    state, _ = applied(user_input("u1", payload))
    assert 1000 < len(state.to_bytes()) < 1300


def test_outputs_outside_the_layout_fall_back_to_json_exactly() -> None:
    big = 2**70  # beyond MessagePack's ints
    cases: list[list[Output]] = [
        [(STORE, {"type": "user_input", "thread_id": "t1", "payload": big})],
        [(OUTCOMES, {"type": "something_else", "x": 1.5})],
        [(OUTCOMES, {"type": "outcome", "thread_id": 7})],
        [("other", {"type": "outcome"})],
    ]
    for outputs in cases:
        data = pack(outputs, "t1")
        assert data[0] == 0x02
        assert unpack(data, "t1") == outputs


def test_a_state_messagepack_cannot_hold_is_written_as_format_1() -> None:
    state = ThreadState("t1")
    apply_in_place(
        state,
        parse_input(user_input("u1", {"m": "hi"})),
        Position("events", 0, 0),
        default_limits(),
    )
    queued = parse_input(user_input("u2", {"n": 2**70}) | {"concurrency": "queue"})
    apply_in_place(state, queued, Position("events", 0, 1), default_limits())
    assert state.queue
    data = state.to_bytes()
    assert data[:1] == b"["
    assert ThreadState.from_bytes(data).queue[0].event["payload"] == {"n": 2**70}


def test_ids_and_timestamps_that_repeat_are_written_small() -> None:
    events = [user_input(f"t1:e{n}", {"m": "hi"}) for n in range(10)]
    state, _ = applied(*events, committed=True)
    data = state.to_bytes()
    assert len(data) < 400, len(data)
    back = ThreadState.from_bytes(data)
    assert back.seen == state.seen
    assert back.interactions == state.interactions


def test_the_dedupe_window_round_trips_whatever_its_ids() -> None:
    for seen in (
        {},
        {"t1:a": 5, "t1:b": 3, "t1": 9, "t1t1": 12},
        {"t1:a": 1, "other": 2},
        {"t1:a\x1ft1:b": 1, "t1:c": 2},
        {"\x1ft1": 1, "t1:x": 2},
        {"t1:é": -1, "t1:\x1f": 2**40},
    ):
        state = ThreadState("t1", seen=dict(seen))
        assert ThreadState.from_bytes(state.to_bytes()).seen == seen


def test_bytes_that_are_no_state_raise_value_errors() -> None:
    # The worker skips faust's own keys of the table by these (processing._has_new_states).
    for data in (b"\x02\x81\xa1a\x01", b"\x02\x05", b"\x02\xc1", b"123", b"\x02"):
        try:
            ThreadState.from_bytes(data)
        except (ValueError, IndexError, TypeError):
            continue
        raise AssertionError(data)
