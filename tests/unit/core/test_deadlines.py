"""Deadlines (contract, "Deadlines (v2)"): heartbeat, expire, thread TTL and delete_thread."""

from __future__ import annotations

import json
from typing import Any

import pytest

from processors.core import (
    STORE,
    Limits,
    Output,
    ThreadState,
    due_deadlines,
    earliest_deadline,
    expire_command,
    replay,
)
from processors.core.deadlines import deadline_of
from processors.core.state import JSON_STATE_FORMAT
from schemas.errors import DecodeError
from schemas.records import parse_input
from schemas.timestamps import from_nanos, to_nanos
from tests.support.driver import T0, Driver, interaction_records, stored

T0_NS = to_nanos(T0)


def at(seconds: float) -> str:
    """T0 plus `seconds`, as the core writes timestamps."""
    return from_nanos(T0_NS + round(seconds * 1_000_000_000))


def start(d: Driver, when: float, event_id: str, thread: str = "t1", **fields: Any) -> str:
    outcome = d.event("user_input", thread, timestamp=at(when), event_id=event_id, **fields)
    assert outcome["status"] in ("started", "queued"), outcome
    return str(outcome["interaction_id"])


def fire(d: Driver, now: float, thread: str = "t1") -> list[Output]:
    """What the worker's timer does at `now`: an expire command per deadline passed."""
    outputs: list[Output] = []
    for deadline in due_deadlines(d.state(thread), d.limits, at(now)):
        outputs.extend(d.send(deadline.expire_command(thread, at(now))))
    return outputs


def expire(
    d: Driver, iid: str | None, reason: str, deadline: str, now: float, thread: str = "t1"
) -> list[Any]:
    record = {
        "type": "command",
        "command": "expire",
        "thread_id": thread,
        "interaction_id": iid,
        "reason": reason,
        "deadline": deadline,
        "timestamp": at(now),
        "event_id": f"expire:{iid or ''}:{reason}:{deadline}:{now}",
    }
    return d.send(record)


def snapshot(state: ThreadState) -> Any:
    """The state less its replay bookkeeping (which every record moves)."""
    v = json.loads(state.to_json_bytes())
    del v[8:12]  # seen, partition, offset, recent
    return v


# --- the defaults and the timer's API ---------------------------------------------------------


def test_an_active_interaction_is_due_after_run_timeout_by_default() -> None:
    d = Driver()
    iid = start(d, 0, "u1")
    assert earliest_deadline(d.state(), d.limits) == at(3600)
    assert due_deadlines(d.state(), d.limits, at(3599.999)) == []
    [due] = due_deadlines(d.state(), d.limits, at(3600))
    assert (due.interaction_id, due.reason, due.at) == (iid, "run_timeout", at(3600))
    assert due.expire_command("t1", at(3601)) == {
        "type": "command",
        "command": "expire",
        "thread_id": "t1",
        "interaction_id": iid,
        "reason": "run_timeout",
        "deadline": at(3600),
        "timestamp": at(3601),
        "event_id": f"expire:{iid}:run_timeout:{at(3600)}",
    }
    assert expire_command("t1", due, at(3601)) == due.expire_command("t1", at(3601))
    parse_input(due.expire_command("t1", at(3601)))  # the timer's command is a valid input


def test_timestamps_with_fractions_are_compared_as_instants() -> None:
    d = Driver(run_timeout=0.5)
    start(d, 0, "u1")
    # As text "...06:00:00.500Z" sorts after "...06:00:01Z"; as instants it is earlier.
    assert earliest_deadline(d.state(), d.limits) == "2026-11-24T06:00:00.500Z"
    assert len(due_deadlines(d.state(), d.limits, at(1))) == 1


def test_no_limit_no_deadline() -> None:
    d = Driver(run_timeout=0)
    start(d, 0, "u1")
    assert earliest_deadline(d.state(), d.limits) is None


# --- expire ------------------------------------------------------------------------------------


def test_run_timeout_fails_the_interaction_with_its_reason() -> None:
    d = Driver(run_timeout=60)
    iid = start(d, 0, "u1")
    outputs = fire(d, 61)
    [record] = interaction_records(outputs)
    assert (record["state"], record["previous_state"], record["reason"]) == (
        "failed",
        "active",
        "run_timeout",
    )
    assert record["timestamp"] == at(61)
    assert [r["status"] for _, r in outputs if r["type"] == "outcome"] == ["applied"]
    assert d.states_of() == {iid: "failed"}
    assert earliest_deadline(d.state(), d.limits) is None


def test_a_timed_out_interaction_drains_the_queue() -> None:
    d = Driver(run_timeout=60)
    first = start(d, 0, "u1", concurrency="queue")
    start(d, 10, "u2", concurrency="queue")
    assert len(d.state().queue) == 1
    outputs = fire(d, 60)
    records = interaction_records(outputs)
    assert [(r["state"], r["reason"]) for r in records] == [
        ("failed", "run_timeout"),
        ("active", None),
    ]
    assert [r["event_id"] for r in stored(outputs)] == ["u2"]  # the queued event starts
    assert not d.state().queue
    assert records[0]["interaction_id"] == first
    assert first not in d.states_of()  # auto_cleanup purged it as the queued one started
    assert earliest_deadline(d.state(), d.limits) == at(120)  # the started one's own run


def test_an_expire_never_fires_early() -> None:
    d = Driver(run_timeout=60)
    iid = start(d, 0, "u1")
    before = snapshot(d.state())
    for deadline, now in [
        (at(60), 59.999),  # its timestamp is before its deadline
        (at(61), 62),  # it names a later deadline than the state's
        (at(59), 62),  # or an earlier one
    ]:
        outputs = expire(d, iid, "run_timeout", deadline, now)
        assert [r["status"] for _, r in outputs] == ["applied"]
        assert snapshot(d.state()) == before
    outputs = expire(d, iid, "idle_timeout", at(60), 62)  # a reason that does not apply
    assert snapshot(d.state()) == before and len(outputs) == 1


def test_expire_is_idempotent() -> None:
    d = Driver(run_timeout=60)
    iid = start(d, 0, "u1")
    first = fire(d, 60)
    after = snapshot(d.state())
    again = expire(d, iid, "run_timeout", at(60), 61)  # another event id: stale
    assert [r["status"] for _, r in again] == ["applied"]
    assert snapshot(d.state()) == after
    assert interaction_records(first) and not interaction_records(again)


def test_the_same_expire_sent_twice_is_a_duplicate() -> None:
    d = Driver(run_timeout=60)
    start(d, 0, "u1")
    [due] = due_deadlines(d.state(), d.limits, at(60))
    d.send(due.expire_command("t1", at(60)))
    outputs = d.send(due.expire_command("t1", at(61)))
    assert [r["status"] for _, r in outputs] == ["duplicate"]


def test_an_expire_for_an_unknown_interaction_is_stale_not_rejected() -> None:
    d = Driver()
    start(d, 0, "u1")
    outputs = expire(d, "nope", "run_timeout", at(3600), 4000)
    assert [(r["status"], r["reason"]) for _, r in outputs] == [("applied", None)]


def test_a_stale_expire_does_not_move_the_thread_clock() -> None:
    d = Driver(thread_ttl=100)
    iid = start(d, 0, "u1")
    d.command("complete", iid, timestamp=at(5), event_id="c1")
    expire(d, iid, "run_timeout", at(3600), 50)  # stale: the interaction is terminal
    assert earliest_deadline(d.state(), d.limits) == at(105)


# --- heartbeat and outputs postpone idle_timeout ---------------------------------------------


def test_a_heartbeat_postpones_idle_timeout_and_stores_nothing() -> None:
    d = Driver(idle_timeout=10)
    iid = start(d, 0, "u1")
    assert earliest_deadline(d.state(), d.limits) == at(10)
    outputs = d.send(
        {"type": "command", "command": "heartbeat", "thread_id": "t1", "interaction_id": iid,
         "timestamp": at(7), "event_id": "hb1"}
    )  # fmt: skip
    assert [(t, r["type"], r["status"]) for t, r in outputs] == [("outcomes", "outcome", "applied")]
    assert earliest_deadline(d.state(), d.limits) == at(17)
    expire(d, iid, "idle_timeout", at(10), 11)  # the deadline the heartbeat moved
    assert d.states_of() == {iid: "active"}
    fire(d, 17)
    assert d.states_of() == {iid: "failed"}
    assert interaction_records(d.log)[-1]["reason"] == "idle_timeout"


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        ("assistant_output", {}),
        ("artifact", {}),
        ("system_trace", {}),
    ],
)
def test_an_output_postpones_idle_timeout(type_: str, fields: dict[str, Any]) -> None:
    d = Driver(idle_timeout=10)
    iid = start(d, 0, "u1")
    d.event(type_, interaction_id=iid, timestamp=at(8), event_id="o1", **fields)
    assert earliest_deadline(d.state(), d.limits) == at(18)


def test_a_command_postpones_idle_timeout() -> None:
    d = Driver(idle_timeout=10)
    iid = start(d, 0, "u1")
    d.command("add_task", iid, task_id="t", timestamp=at(4), event_id="a1")
    assert earliest_deadline(d.state(), d.limits) == at(14)


def test_a_merged_user_input_is_no_sign_of_life() -> None:
    d = Driver(idle_timeout=10)
    iid = start(d, 0, "u1", concurrency="merge")
    outcome = d.event("user_input", timestamp=at(5), event_id="u2", concurrency="merge")
    assert outcome["status"] == "merged"
    assert deadline_of(d.state(), d.limits, iid, "idle_timeout") is not None
    assert earliest_deadline(d.state(), d.limits) == at(10)


def test_heartbeat_is_rejected_on_unknown_and_terminal_interactions() -> None:
    d = Driver()
    iid = start(d, 0, "u1")
    assert d.command("heartbeat", "nope")["reason"] == "Interaction not found: nope"
    d.command("complete", iid)
    outcome = d.command("heartbeat", iid)
    assert (outcome["status"], outcome["reason"]) == (
        "rejected",
        f"interaction '{iid}' is terminal",
    )


# --- waits -------------------------------------------------------------------------------------


def test_wait_timeout_counts_from_the_wait_and_a_resume_restarts_the_run() -> None:
    d = Driver(run_timeout=100, wait_timeout=30)
    iid = start(d, 0, "u1")
    d.command("wait_user", iid, timestamp=at(10), event_id="w1")
    assert [(x.reason, x.at) for x in due_deadlines(d.state(), d.limits, at(1000))] == [
        ("wait_timeout", at(40))
    ]
    assert d.event("user_input", timestamp=at(20), event_id="u2")["status"] == "resumed"
    assert earliest_deadline(d.state(), d.limits) == at(120)  # run_timeout from the resume
    d.command("wait_event", iid, kind="pay", timestamp=at(50), event_id="w2")
    fire(d, 80)
    assert interaction_records(d.log)[-1]["reason"] == "wait_timeout"


def test_a_waits_own_timeout_overrides_the_thread_and_the_default() -> None:
    d = Driver(wait_timeout=30)
    iid = start(d, 0, "u1")
    d.command("configure", wait_timeout=20.0, timestamp=at(1), event_id="cfg")
    d.command("wait_user", iid, timeout=5, timestamp=at(10), event_id="w1")
    assert earliest_deadline(d.state(), d.limits) == at(15)
    d.event("user_input", timestamp=at(11), event_id="u2")
    d.command("wait_user", iid, timestamp=at(12), event_id="w2")  # no timeout: the thread's
    assert earliest_deadline(d.state(), d.limits) == at(32)
    d.event("user_input", timestamp=at(13), event_id="u3")
    d.command("wait_user", iid, timeout=0, timestamp=at(14), event_id="w3")  # 0: none
    assert earliest_deadline(d.state(), d.limits) is None


def test_a_paused_interaction_has_no_deadline() -> None:
    d = Driver(run_timeout=10, idle_timeout=5, wait_timeout=5)
    iid = start(d, 0, "u1")
    d.command("pause", iid, timestamp=at(1), event_id="p1")
    assert earliest_deadline(d.state(), d.limits) is None


def test_configure_overrides_the_defaults_per_thread() -> None:
    d = Driver(run_timeout=60)
    d.command("configure", run_timeout=10, idle_timeout=3.5, timestamp=at(0), event_id="cfg")
    start(d, 1, "u1")
    assert [(x.reason, x.at) for x in due_deadlines(d.state(), d.limits, at(100))] == [
        ("idle_timeout", at(4.5)),
        ("run_timeout", at(11)),
    ]
    start(d, 2, "u2", thread="t2")  # another thread keeps the defaults
    assert earliest_deadline(d.state("t2"), d.limits) == at(62)
    d.command("configure", run_timeout=0, idle_timeout=0, timestamp=at(3), event_id="cfg2")
    assert earliest_deadline(d.state(), d.limits) is None  # 0: none, whatever the default


# --- thread_ttl and delete_thread --------------------------------------------------------------


def _mark(outputs: list[Any]) -> dict[str, Any]:
    [mark] = [r for r in stored(outputs) if r["type"] == "system_trace"]
    return mark


def test_thread_ttl_shrinks_the_thread_and_seq_continues() -> None:
    d = Driver(thread_ttl=60)
    iid = start(d, 0, "u1")
    d.event("assistant_output", interaction_id=iid, timestamp=at(1), event_id="a1")
    assert earliest_deadline(d.state(), d.limits) == at(3600)  # busy: no TTL yet
    d.command("complete", iid, timestamp=at(2), event_id="c1")
    [due] = due_deadlines(d.state(), d.limits, at(62))
    assert (due.interaction_id, due.reason, due.at) == (None, "thread_ttl", at(62))
    outputs = d.send(due.expire_command("t1", at(63)))
    mark = _mark(outputs)
    assert mark == {
        "type": "system_trace",
        "thread_id": "t1",
        "interaction_id": None,
        "level": "info",
        "payload": {
            "category": "runtime_lifecycle",
            "event_type": "thread_expired",
            "interaction_id": None,
        },
        "task_id": None,
        "step_id": None,
        "timestamp": at(63),
        "seq": 3,
        "event_id": f"thread_expired:expire::thread_ttl:{at(62)}",
    }
    state = d.state()
    assert (state.seq, state.interactions, state.queue, state.updated_at) == (3, {}, [], None)
    assert earliest_deadline(state, d.limits) is None  # nothing left to expire
    state.recent.clear()
    # Measured: 96 bytes for "t1", most of it the expire's own id in the dedupe window.
    assert len(state.to_bytes()) < 100
    # Expired again: stale. A later record continues seq after the mark.
    again = d.send(due.expire_command("t1", at(64)) | {"event_id": "again"})
    assert not stored(again)
    assert d.command("complete", iid)["reason"] == f"Interaction not found: {iid}"
    d.event("user_input", timestamp=at(100), event_id="u9")
    assert [r["seq"] for r in stored(d.log)] == [1, 2, 3, 4]
    assert earliest_deadline(d.state(), d.limits) == at(3700)


def test_thread_ttl_waits_for_the_queue_and_counts_from_the_last_record() -> None:
    d = Driver(thread_ttl=60)
    d.command("configure", thread_ttl=30.0, timestamp=at(0), event_id="cfg")
    assert earliest_deadline(d.state(), d.limits) == at(30)
    d.command("cancel_all", timestamp=at(10), event_id="x")  # a record: the clock restarts
    assert earliest_deadline(d.state(), d.limits) == at(40)


def test_delete_thread_cancels_then_marks() -> None:
    d = Driver()
    d.command("configure", policy="parallel", timestamp=at(0), event_id="cfg")
    a = start(d, 1, "u1")
    b = start(d, 2, "u2")
    d.command("wait_user", b, timestamp=at(3), event_id="w")
    outputs = d.send(
        {"type": "command", "command": "delete_thread", "thread_id": "t1", "timestamp": at(4),
         "event_id": "del"}
    )  # fmt: skip
    kinds = [(t, r["type"], r.get("interaction_id")) for t, r in outputs]
    assert kinds == [
        ("outcomes", "interaction", a),
        ("outcomes", "interaction", b),
        (STORE, "system_trace", None),
        ("outcomes", "outcome", None),
    ]
    assert [r["state"] for r in interaction_records(outputs)] == ["cancelled", "cancelled"]
    mark = _mark(outputs)
    assert (mark["payload"]["event_type"], mark["seq"], mark["event_id"]) == (
        "thread_deleted",
        3,
        "thread_deleted:del",
    )
    state = d.state()
    assert (state.interactions, state.policy, state.updated_at) == ({}, None, None)
    assert d.event("user_input", timestamp=at(5), event_id="u3")["status"] == "started"
    assert stored(d.log)[-1]["seq"] == 4


def test_delete_thread_drops_the_queue_without_starting_it() -> None:
    d = Driver()
    start(d, 0, "u1", concurrency="queue")
    start(d, 1, "u2", concurrency="queue")
    outputs = d.send(
        {"type": "command", "command": "delete_thread", "thread_id": "t1", "timestamp": at(2)}
    )
    assert [r["state"] for r in interaction_records(outputs)] == ["cancelled"]
    assert not d.state().queue and not d.state().interactions


# --- state format ------------------------------------------------------------------------------


def test_states_saved_before_deadlines_still_load() -> None:
    old_interaction = ["i1", "active", at(0), "u1", None, [], None, False]
    done = ["i0", "completed", at(0), "u0", at(1), [], None, False]
    for old in (
        [JSON_STATE_FORMAT, "t1", 3, [done, old_interaction], [], None, None, None, [], 0, 5, [], at(9)],
        [JSON_STATE_FORMAT, "t1", 3, [done, old_interaction], [], None, None, None, [], 0, 5, [], at(9),
         None],
    ):  # fmt: skip
        state = ThreadState.from_bytes(json.dumps(old).encode())
        interaction = state.interactions["i1"]
        # Counted from the thread's last record: possibly late, never early.
        assert (interaction.since, interaction.alive) == (at(9), at(9))
        assert state.interactions["i0"].since is None
        assert earliest_deadline(state, Limits()) == at(3609)
        assert ThreadState.from_bytes(state.to_bytes()) == state


def test_state_round_trips_the_new_fields() -> None:
    d = Driver()
    iid = start(d, 0, "u1")
    d.command("configure", run_timeout=5.5, thread_ttl=9, timestamp=at(1), event_id="c")
    d.command("heartbeat", iid, timestamp=at(1.25), event_id="h")
    d.command("wait_user", iid, timeout=2.5, timestamp=at(2), event_id="w")
    state = d.state()
    assert ThreadState.from_bytes(state.to_bytes()) == state
    assert state.copy().interactions[iid].wait_timeout == 2.5
    assert (state.run_timeout, state.idle_timeout, state.thread_ttl) == (5.5, None, 9)


def test_a_terminal_interaction_keeps_no_deadline_fields() -> None:
    d = Driver()
    iid = start(d, 0, "u1", concurrency="parallel")
    d.command("complete", iid, timestamp=at(1), event_id="c")
    [wire] = json.loads(d.state().to_json_bytes())[3]
    assert len(wire) == 8


# --- records -----------------------------------------------------------------------------------


def _command(**fields: Any) -> dict[str, Any]:
    return {"type": "command", "thread_id": "t1", "timestamp": T0, **fields}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_command(command="expire", interaction_id="i", deadline=T0), "needs `reason`"),
        (_command(command="expire", interaction_id="i", reason="run_timeout"), "needs `reason`"),
        (_command(command="expire", interaction_id="i", reason="late", deadline=T0), "`reason`"),
        (_command(command="expire", reason="run_timeout", deadline=T0), "unless"),
        (
            _command(command="expire", interaction_id="i", reason="thread_ttl", deadline=T0),
            "unless",
        ),
        (
            _command(command="expire", interaction_id="i", reason="run_timeout", deadline="soon"),
            "invalid `deadline`",
        ),
        (_command(command="heartbeat"), "command `heartbeat` needs `interaction_id`"),
        (_command(command="complete", interaction_id="i", timeout=3), "`timeout` is for"),
        (_command(command="configure", run_timeout=-1), "invalid `run_timeout`"),
        (_command(command="configure", idle_timeout=float("nan")), "invalid `idle_timeout`"),
        (_command(command="configure", thread_ttl="60"), "invalid `thread_ttl`"),
        (_command(command="configure", wait_timeout=True), "invalid `wait_timeout`"),
    ],
)
def test_deadline_fields_are_validated(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_input(record)
    assert reason in caught.value.reason


def test_expire_normalizes_its_deadline() -> None:
    command = parse_input(
        _command(
            command="expire", interaction_id="i", reason="wait_timeout",
            deadline="2026-11-24T07:00:00+01:00",
        )
    )  # fmt: skip
    assert command.deadline == T0  # type: ignore[union-attr]


def test_replay_of_deadlines_is_a_pure_function_of_the_input() -> None:
    records: list[dict[str, Any]] = [
        {"type": "user_input", "thread_id": "t1", "payload": {}, "timestamp": at(0),
         "event_id": "u1", "concurrency": "queue"},
        {"type": "user_input", "thread_id": "t1", "payload": {}, "timestamp": at(1),
         "event_id": "u2", "concurrency": "queue"},
    ]  # fmt: skip
    d = Driver(idle_timeout=5, thread_ttl=10)
    for record in records:
        d.send(record)
    for now in (6, 12, 30, 50):
        for due in due_deadlines(d.state(), d.limits, at(now)):
            command = due.expire_command("t1", at(now))
            records.append(command)
            d.send(command)
    limits = Limits(idle_timeout=5, thread_ttl=10)
    assert replay(records, limits) == replay(records, limits) == d.log
    assert [r["payload"]["event_type"] for r in stored(d.log) if r["type"] == "system_trace"] == [
        "thread_expired"
    ]
