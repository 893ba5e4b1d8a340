"""Executor commands, the terminal guard, cleanup, retention and dedupe."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.core import ids
from tests.support.driver import Driver, interaction_records

TRANSITIONS = {
    "complete": "completed",
    "fail": "failed",
    "cancel": "cancelled",
    "wait_user": "waiting_user",
    "wait_event": "waiting_event",
    "pause": "paused",
}


@pytest.mark.parametrize(("command", "state"), sorted(TRANSITIONS.items()))
def test_command_moves_the_interaction_and_announces_it(command: str, state: str) -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    outputs = d.send(
        {
            "type": "command",
            "command": command,
            "thread_id": "t1",
            "interaction_id": iid,
            "event_id": "c1",
        }
    )
    [record] = interaction_records(outputs)
    assert (record["state"], record["previous_state"], record["cause_event_id"]) == (
        state,
        "active",
        "c1",
    )
    assert d.states_of()[iid] == state


@pytest.mark.parametrize("terminal", ["complete", "fail", "cancel"])
@pytest.mark.parametrize("command", [*TRANSITIONS, "resume"])
def test_terminal_states_never_change(terminal: str, command: str) -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    d.command(terminal, iid)
    out = d.command(command, iid)
    # `resume` answers in the seed's own words (`resume_interaction`), the others the contract's.
    words = " and cannot be resumed" if command == "resume" else ""
    assert (out["status"], out["reason"]) == ("rejected", f"interaction '{iid}' is terminal{words}")
    assert d.states_of()[iid] == TRANSITIONS[terminal]


def test_resume_reactivates_paused_and_waiting_interactions() -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    for wait in ("pause", "wait_user", "wait_event"):
        d.command(wait, iid)
        assert d.command("resume", iid)["status"] == "applied"
        assert d.states_of()[iid] == "active"


def test_same_state_command_is_applied_without_a_record() -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    outputs = d.send(
        {"type": "command", "command": "resume", "thread_id": "t1", "interaction_id": iid}
    )
    assert interaction_records(outputs) == []


def test_add_task_is_accepted_even_on_terminal_interactions() -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    d.command("add_task", iid, task_id="task-1")
    d.command("complete", iid)
    assert d.command("add_task", iid, task_id="task-2")["status"] == "applied"
    assert d.state().interactions[iid].task_ids == ["task-1", "task-2"]


def test_wait_event_kind_must_match_case_insensitively() -> None:
    d = Driver(default_policy="parallel")
    iid = d.event()["interaction_id"]
    d.command("wait_event", iid, kind="WebHook")
    assert d.event("external_event", kind="timer")["status"] == "started"
    out = d.event("external_event", kind="webhook")
    assert (out["status"], out["interaction_id"]) == ("resumed", iid)


def test_cancel_all_cancels_every_nonterminal_and_purges() -> None:
    d = Driver(default_policy="parallel")
    a, b = d.event()["interaction_id"], d.event()["interaction_id"]
    d.command("wait_user", b)
    outputs = d.send({"type": "command", "command": "cancel_all", "thread_id": "t1"})
    assert {(r["interaction_id"], r["state"]) for r in interaction_records(outputs)} == {
        (a, "cancelled"),
        (b, "cancelled"),
    }
    assert d.states_of() == {}
    assert d.command("complete", a)["reason"] == f"Interaction not found: {a}"


def test_completed_interactions_are_purged_at_the_next_start() -> None:
    d = Driver()
    iid = d.event()["interaction_id"]
    d.command("complete", iid)
    assert iid in d.states_of()
    d.event()
    assert iid not in d.states_of()
    out = d.event("assistant_output", interaction_id=iid)
    assert out["reason"] == f"Interaction not found: {iid}"


def test_parallel_starts_do_not_purge() -> None:
    d = Driver(default_policy="parallel")
    iid = d.event()["interaction_id"]
    d.command("complete", iid)
    d.event()
    assert d.states_of()[iid] == "completed"


def test_terminal_retention_purges_the_oldest_first() -> None:
    d = Driver(default_policy="parallel", terminal_retention=2)
    ids = []
    for _ in range(3):
        iid = d.event()["interaction_id"]
        d.command("complete", iid)
        ids.append(iid)
    assert list(d.states_of()) == ids[1:]


def test_configure_applies_from_now_on() -> None:
    d = Driver()
    assert (
        d.command(
            "configure",
            policy={"name": "parallel", "max_parallel": 2},
            max_interactions_per_thread=5,
            auto_cleanup=False,
        )["status"]
        == "applied"
    )
    assert [d.event()["status"] for _ in range(3)] == ["started", "started", "rejected"]
    assert d.log[-1][1]["reason"] == "Maximum parallel interactions (2) reached"


def test_duplicate_event_id_changes_nothing() -> None:
    d = Driver()
    first = d.event(event_id="e1")
    before = d.state().to_bytes()
    outputs = d.send({"type": "user_input", "thread_id": "t1", "event_id": "e1", "payload": 1})
    assert [r["status"] for _, r in outputs] == ["duplicate"]
    assert d.state().interactions.keys() == {first["interaction_id"]}
    assert d.state().seq == 1 and len(before) > 0


def test_dedupe_window_forgets_old_ids() -> None:
    d = Driver(dedupe_window=2, default_policy="parallel", max_parallel=10)
    for n in range(3):
        d.event(event_id=f"e{n}", concurrency="reject")
        d.command("cancel_all")
    assert d.event(event_id="e2")["status"] == "duplicate"
    # e0 fell out of the window; its interaction was purged, so it starts again.
    assert d.event(event_id="e0")["status"] == "started"


def test_interaction_ids_are_derived_from_thread_and_event_id() -> None:
    a, b = Driver(), Driver()
    assert a.event(event_id="x")["interaction_id"] == b.event(event_id="x")["interaction_id"]
    assert a.event(event_id="y", thread="t2")["interaction_id"] != a.log[2][1]["interaction_id"]


def test_invalid_record_is_answered_when_its_thread_is_known() -> None:
    d = Driver()
    outputs = d.send({"type": "user_input", "thread_id": "t1", "event_id": "bad"})
    assert [(r["status"], r["reason"], r["source_event_id"]) for _, r in outputs] == [
        ("invalid", "missing field `payload`", "bad")
    ]
    assert d.send({"type": "user_input", "payload": 1}) == []  # no thread: DLQ only


@given(st.text(max_size=40), st.text(max_size=40))
def test_derived_interaction_id_is_uuid5_of_thread_and_event(thread_id: str, event_id: str) -> None:
    expected = uuid.uuid5(ids.INTERACTION_NAMESPACE, f"{len(thread_id)}:{thread_id}{event_id}")
    assert ids.interaction_id(thread_id, event_id) == str(expected)


def test_an_event_id_already_queued_is_a_duplicate_whatever_the_window() -> None:
    d = Driver(default_policy="queue", dedupe_window=0)
    first = d.event(event_id="e1")["interaction_id"]
    assert d.event(event_id="e2")["status"] == "queued"
    assert d.event(event_id="e2")["status"] == "duplicate"
    d.command("complete", first)  # e2 starts
    second = ids.interaction_id("t1", "e2")
    assert d.states_of()[second] == "active"
    d.command("complete", second)
    assert d.states_of()[second] == "completed"  # and stays so: no second copy to start


def test_an_event_id_whose_interaction_is_known_is_a_duplicate_whatever_the_window() -> None:
    d = Driver(dedupe_window=0, default_policy="parallel")
    iid = d.event(event_id="e1")["interaction_id"]
    d.command("complete", iid)
    assert d.event(event_id="e1")["status"] == "duplicate"
    assert d.states_of()[iid] == "completed"


def test_fail_with_a_reason_carries_it_on_the_failed_record() -> None:
    d = Driver()
    iid = d.event("user_input")["interaction_id"]
    outputs = d.send(
        {
            "type": "command",
            "command": "fail",
            "thread_id": "t1",
            "interaction_id": iid,
            "reason": "ValueError: no model answered",
        }
    )
    (record,) = interaction_records(outputs)
    assert (record["state"], record["reason"]) == ("failed", "ValueError: no model answered")


@pytest.mark.parametrize("command", ["complete", "wait_user", "cancel"])
def test_a_reason_on_another_command_is_invalid(command: str) -> None:
    d = Driver()
    iid = d.event("user_input")["interaction_id"]
    outcome = d.command(command, iid, reason="why")
    assert outcome["status"] == "invalid" and "`reason` is for `fail` and `expire`" in str(
        outcome["reason"]
    )
