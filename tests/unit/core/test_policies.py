"""The concurrency decision table, idle and busy, for every policy and alias."""

from __future__ import annotations

import pytest

from processors.core import Action, Policy, decide
from tests.support.driver import Driver, stored


def policy(name: str, max_parallel: int = 4, max_queue_depth: int = 10) -> Policy:
    return Policy(name, max_parallel, max_queue_depth)


@pytest.mark.parametrize("name", ["interrupt", "reject", "parallel", "merge", "queue", "rollback"])
def test_idle_thread_always_starts(name: str) -> None:
    assert decide(policy(name), nonterminal=0, queue_len=0).action is Action.START


@pytest.mark.parametrize(
    ("name", "kwargs", "action", "reason"),
    [
        ("interrupt", {}, Action.INTERRUPT, None),
        ("rollback", {}, Action.ROLLBACK, None),
        ("reject", {}, Action.REJECT, "System is busy processing another request"),
        ("parallel", {"nonterminal": 3}, Action.START, None),
        (
            "parallel",
            {"nonterminal": 4},
            Action.REJECT,
            "Maximum parallel interactions (4) reached",
        ),
        ("merge", {"merge_target": True}, Action.MERGE, None),
        ("merge", {}, Action.START_BESIDE, None),  # none active: start, purge nothing
        ("merge", {"expected_interaction": True}, Action.QUEUE, None),
        ("queue", {"queue_len": 9}, Action.QUEUE, None),
        ("queue", {"queue_len": 10}, Action.REJECT, "Queue full (10)"),
    ],
)
def test_busy_thread(
    name: str, kwargs: dict[str, object], action: Action, reason: str | None
) -> None:
    args: dict[str, object] = {"nonterminal": 1, "queue_len": 0, **kwargs}
    decision = decide(policy(name), **args)  # type: ignore[arg-type]
    assert (decision.action, decision.reason) == (action, reason)


BUSY_OUTCOMES = {
    "interrupt": "started",
    "interrupt_and_start_new": "started",
    "rollback": "started",
    "reject": "rejected",
    "reject_when_busy": "rejected",
    "parallel": "started",
    "merge": "merged",
    "steer": "merged",
    "queue": "queued",
    "enqueue": "queued",
}


@pytest.mark.parametrize(("name", "status"), sorted(BUSY_OUTCOMES.items()))
def test_each_policy_end_to_end(name: str, status: str) -> None:
    d = Driver()
    assert d.event(concurrency=name)["status"] == "started"
    assert d.event(concurrency=name)["status"] == status


def test_per_event_override_beats_thread_configuration() -> None:
    d = Driver()
    d.command("configure", policy="reject")
    d.event()
    assert d.event()["status"] == "rejected"
    assert d.event(concurrency={"name": "queue", "max_queue_depth": 1})["status"] == "queued"
    out = d.event(concurrency="queue", max_queue_depth=1)
    assert (out["status"], out["reason"]) == ("rejected", "Queue full (1)")


def test_rollback_marks_cancelled_interactions() -> None:
    d = Driver(default_policy="rollback")
    first = d.event()["interaction_id"]
    outputs = d.send({"type": "user_input", "thread_id": "t1", "payload": 2})
    cancelled = next(r for _, r in outputs if r.get("state") == "cancelled")
    assert (cancelled["interaction_id"], cancelled["rolled_back"]) == (first, True)
    mark, event = stored(outputs)
    assert mark["payload"]["interaction_id"] == first
    assert event["interaction_id"] not in (first, None)


def test_rollback_stores_a_mark_right_after_each_cancelled_record() -> None:
    d = Driver(default_policy="parallel")
    a, b = d.event()["interaction_id"], d.event()["interaction_id"]
    d.command("wait_user", b)
    outputs = d.send(
        {
            "type": "external_event",
            "thread_id": "t1",
            "kind": "k",
            "payload": 1,
            "concurrency": "rollback",
            "event_id": "e9",
            "timestamp": "2026-11-24T07:00:00.5Z",
        }
    )
    kinds = [(t, r.get("state") or r["type"]) for t, r in outputs]
    assert kinds == [
        ("outcomes", "cancelled"),
        ("store", "system_trace"),
        ("outcomes", "cancelled"),
        ("store", "system_trace"),
        ("store", "external_event"),
        ("outcomes", "active"),
        ("outcomes", "outcome"),
    ]
    assert [outputs[i][1]["interaction_id"] for i in (0, 2)] == [a, b]
    # The seed's lifecycle-trace shape, at thread level, in logical time, its own seq.
    assert [outputs[1][1], outputs[3][1]] == [
        {
            "type": "system_trace",
            "thread_id": "t1",
            "interaction_id": None,
            "level": "info",
            "payload": {
                "category": "runtime_lifecycle",
                "event_type": "turn_rolled_back",
                "interaction_id": iid,
            },
            "task_id": None,
            "step_id": None,
            "timestamp": "2026-11-24T07:00:00.500Z",
            "seq": seq,
            "event_id": f"rollback:{iid}:e9",
        }
        for iid, seq in ((a, 3), (b, 4))
    ]
    assert outputs[4][1]["seq"] == 5


def test_interrupt_and_cancel_all_store_no_mark() -> None:
    d = Driver()
    d.event()
    d.event()  # interrupts the first
    d.command("cancel_all")
    assert [r["type"] for r in stored(d.log)] == ["user_input", "user_input"]


def test_merge_into_expected_interaction_or_fall_back_to_queue() -> None:
    d = Driver(default_policy="parallel")
    a = d.event()["interaction_id"]
    b = d.event()["interaction_id"]
    out = d.event(concurrency="merge", expected_interaction_id=a)
    assert (out["status"], out["interaction_id"]) == ("merged", a)
    d.command("pause", b)
    out = d.event(concurrency="merge", expected_interaction_id=b)
    assert (out["status"], out["queue_position"]) == ("queued", 1)
