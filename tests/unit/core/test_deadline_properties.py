"""Deadline rules that hold for every history of a thread (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import STORE, Limits, Output, ThreadState, due_deadlines, replay
from processors.core.deadlines import deadline_of, pending_deadlines
from schemas.timestamps import from_nanos, to_nanos
from tests.support.driver import T0, Driver

T0_NS = to_nanos(T0)
REASONS = ("run_timeout", "idle_timeout", "wait_timeout", "thread_ttl")
OPS = (
    "start", "start", "heartbeat", "output", "wait_user", "wait_event", "user_input",
    "external_event", "complete", "fail", "pause", "resume", "configure", "delete_thread",
)  # fmt: skip

limits_st = st.builds(
    dict,
    run_timeout=st.sampled_from([0.0, 30.0, 60.0]),
    idle_timeout=st.sampled_from([0.0, 5.0, 10.0]),
    wait_timeout=st.sampled_from([0.0, 7.0]),
    thread_ttl=st.sampled_from([0.0, 15.0]),
)
# (operation, seconds after the previous record, a small option: policy or timeout)
steps_st = st.lists(
    st.tuples(
        st.sampled_from(OPS),
        st.sampled_from([0, 0.001, 0.5, 1, 3, 7, 20]),
        st.integers(0, 3),
    ),
    max_size=25,
)


class History:
    """Feeds a thread the generated steps (and the timer's expires), keeping the input."""

    def __init__(self, limits: dict[str, float]) -> None:
        self.driver = Driver(**limits)
        self.records: list[dict[str, Any]] = []
        self.now = 0  # nanoseconds after T0
        self.n = 0

    def at(self, delay: float = 0) -> str:
        self.now += round(delay * 1_000_000_000)
        return from_nanos(T0_NS + self.now)

    def send(self, record: dict[str, Any]) -> list[Output]:
        self.records.append(record)
        return self.driver.send(record)

    def newest(self) -> str | None:
        state = self.driver.states.get("t1")
        return next(reversed(state.interactions), None) if state and state.interactions else None

    def step(self, op: str, delay: float, option: int) -> None:
        self.n += 1
        base: dict[str, Any] = {
            "thread_id": "t1",
            "timestamp": self.at(delay),
            "event_id": f"e{self.n}",
        }
        iid = self.newest()
        if op in ("start", "user_input", "external_event"):
            kind = "external_event" if op == "external_event" else "user_input"
            record = {"type": kind, "payload": {}, **base}
            if kind == "external_event":
                record["kind"] = "pay"
            if op == "start":
                record["concurrency"] = ["interrupt", "queue", "parallel", "merge"][option]
        elif op == "output":
            record = {"type": "assistant_output", "payload": {}, "interaction_id": iid, **base}
        elif op == "configure":
            record = {"type": "command", "command": "configure", **base}
            record[REASONS[option]] = [0.0, 4.0, 12.0, 50.0][option]
        elif op == "delete_thread":
            record = {"type": "command", "command": "delete_thread", **base}
        else:
            record = {"type": "command", "command": op, "interaction_id": iid or "x", **base}
            if op in ("wait_user", "wait_event") and option:
                record["timeout"] = [0, 2.0, 9.0, 0.0][option]
        self.send(record)

    def fire(self, delay: float) -> None:
        """The worker's timer at `now`: an expire per deadline passed."""
        now = self.at(delay)
        state = self.driver.states.get("t1")
        if state is not None:
            for due in due_deadlines(state, self.driver.limits, now):
                self.send(due.expire_command("t1", now))


def snapshot(state: ThreadState) -> Any:
    v = json.loads(state.to_json_bytes())
    del v[8:12]  # seen, partition, offset, recent: every record moves them
    return v


@settings(max_examples=200, deadline=None)
@given(
    limits_st,
    steps_st,
    st.sampled_from(REASONS),
    st.integers(0, 3),
    st.sampled_from([-1_000_000_000, -1, 0, 0, 1, 500_000_000]),
    st.sampled_from([-1, 0, 0, 1, 10_000_000_000]),
)
def test_an_expire_applies_exactly_when_its_deadline_holds(
    limits: dict[str, float],
    steps: list[tuple[str, float, int]],
    reason: str,
    which: int,
    deadline_shift: int,
    lateness: int,
) -> None:
    """Never early (before its deadline, or naming another one), never stale, else applied."""
    h = History(limits)
    for op, delay, option in steps:
        h.step(op, delay, option)
    state = h.driver.states.get("t1")
    if state is None:
        return
    ids = [*state.interactions, "unknown"]
    iid = ids[which % len(ids)] if reason != "thread_ttl" else None
    real = deadline_of(state, h.driver.limits, iid, reason)
    base_ns = real.nanos if real is not None else T0_NS + h.now
    named = from_nanos(base_ns + deadline_shift)
    now_ns = max(to_nanos(named) + lateness, T0_NS + h.now)  # logical time never runs back
    before = snapshot(state)
    expire = {
        "type": "command", "command": "expire", "thread_id": "t1", "interaction_id": iid,
        "reason": reason, "deadline": named, "timestamp": from_nanos(now_ns),
        "event_id": "expire-under-test",
    }  # fmt: skip
    outputs = h.send(expire)
    changed = snapshot(h.driver.state()) != before
    should = real is not None and deadline_shift == 0 and now_ns >= real.nanos
    assert changed == should, (real, named, now_ns)
    assert [r["status"] for t, r in outputs if r["type"] == "outcome"] == ["applied"]
    if not should:
        assert outputs == [o for o in outputs if o[1]["type"] == "outcome"]


@settings(max_examples=200, deadline=None)
@given(limits_st, steps_st, st.sampled_from([0.001, 1, 4, 30]))
def test_signs_of_life_never_bring_a_deadline_forward(
    limits: dict[str, float], steps: list[tuple[str, float, int]], delay: float
) -> None:
    h = History(limits)
    for op, d, option in steps:
        h.step(op, d, option)
    state = h.driver.states.get("t1")
    iid = h.newest()
    if state is None or iid is None:
        return
    before = {
        (x.interaction_id, x.reason): x.nanos for x in pending_deadlines(state, h.driver.limits)
    }
    for op in ("heartbeat", "output"):
        h.step(op, delay, 0)
        after = pending_deadlines(h.driver.state(), h.driver.limits)
        for x in after:
            assert x.nanos >= before.get((x.interaction_id, x.reason), x.nanos)
            if x.reason == "idle_timeout" and x.interaction_id == iid:
                configured = h.driver.state().idle_timeout
                idle = limits["idle_timeout"] if configured is None else configured
                assert x.at == from_nanos(T0_NS + h.now + round(idle * 1e9))


@settings(max_examples=150, deadline=None)
@given(
    limits_st,
    st.lists(st.tuples(steps_st, st.sampled_from([0, 1, 8, 40, 4000])), max_size=4),
)
def test_timer_histories_keep_seq_gap_free_and_replay_identical(
    limits: dict[str, float], rounds: list[tuple[list[tuple[str, float, int]], float]]
) -> None:
    """Whatever expires when, store seq runs 1, 2, 3, ... and replay gives the same output."""
    h = History(limits)
    for steps, wait in rounds:
        for op, delay, option in steps:
            h.step(op, delay, option)
        h.fire(wait)
        h.fire(0)  # the timer again: what it sent is stale or duplicate now
    seqs = [r["seq"] for t, r in h.driver.log if t == STORE]
    assert seqs == list(range(1, len(seqs) + 1))
    assert replay(h.records, Limits(**limits)) == h.driver.log
    state = h.driver.states.get("t1")
    if state is not None:
        assert ThreadState.from_bytes(state.to_bytes()) == state
        # After the timer ran, nothing is overdue: every passed deadline fired.
        assert due_deadlines(state, h.driver.limits, from_nanos(T0_NS + h.now)) == []
