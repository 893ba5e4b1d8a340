"""The seed's acceptance cases (seed-semantics.md §9.1, §9.2, §9.4) as the contract states them."""

from __future__ import annotations

from processors.core import STORE
from tests.support.driver import Driver, interaction_records, outcome_of, stored


def started(d: Driver, **fields: object) -> str:
    out = d.event(**fields)  # type: ignore[arg-type]
    assert out["status"] == "started", out
    return str(out["interaction_id"])


# --- §9.1 thread_runtime.rs ---------------------------------------------------------------------


def test_resume_prefers_latest_waiting_user() -> None:
    d = Driver(default_policy="parallel")
    older, newer = started(d), started(d)
    d.command("wait_user", older)
    d.command("wait_user", newer)
    out = d.event(interaction_id="ignored")
    assert (out["status"], out["interaction_id"]) == ("resumed", newer)
    assert d.states_of()[newer] == "active" and d.states_of()[older] == "waiting_user"


def test_resumed_user_input_is_stored_with_the_waiting_interaction_id() -> None:
    d = Driver()
    target = started(d)
    d.command("wait_user", target)
    outputs = d.send(
        {"type": "user_input", "thread_id": "t1", "interaction_id": "wrong", "payload": 1}
    )
    [event] = stored(outputs)
    assert event["interaction_id"] == target and event["type"] == "user_input"
    assert outcome_of(outputs)["status"] == "resumed"


def test_started_event_is_published_with_its_new_interaction_id() -> None:
    d = Driver()
    outputs = d.send(
        {
            "type": "user_input",
            "thread_id": "t1",
            "interaction_id": "cli",
            "payload": {"message": "hello"},
        }
    )
    [event] = stored(outputs)
    assert event["interaction_id"] != "cli"
    assert event["payload"]["message"] == "hello"
    assert event["interaction_id"] == outcome_of(outputs)["interaction_id"]


def test_rejects_when_max_active_interactions_reached() -> None:
    d = Driver(
        default_policy="parallel",
        max_parallel=10,
        max_interactions_per_thread=1,
        auto_cleanup=False,
    )
    started(d)
    out = d.event()
    assert out["status"] == "rejected"
    assert "Maximum active interactions (1) reached" in out["reason"]


def test_queue_policy_queues_instead_of_rejecting() -> None:
    # The seed rejected ("Queue policy is not implemented"); the contract fixes it.
    d = Driver(default_policy="queue")
    first = started(d)
    out = d.event(event_id="second")
    assert (out["status"], out["queue_position"], out["interaction_id"]) == ("queued", 1, None)
    outputs = d.send(
        {"type": "command", "command": "complete", "thread_id": "t1", "interaction_id": first}
    )
    [event] = stored(outputs)
    assert event["event_id"] == "second"
    assert [r["state"] for r in interaction_records(outputs)] == ["completed", "active"]
    assert interaction_records(outputs)[1]["cause_event_id"] == "second"
    assert outcome_of(outputs)["status"] == "applied"  # the queued event gets no second outcome


# --- §9.2 the store is the bus -------------------------------------------------------------------


def test_external_event_reaches_the_bus() -> None:
    d = Driver()
    [event] = stored(
        d.send(
            {"type": "external_event", "thread_id": "thread-1", "kind": "tick", "payload": {"n": 1}}
        )
    )
    assert (event["type"], event["kind"], event["payload"]) == ("external_event", "tick", {"n": 1})


def test_thread_level_trace_is_stored_without_an_interaction() -> None:
    d = Driver()
    outputs = d.send({"type": "system_trace", "thread_id": "t1", "level": "info", "payload": None})
    [event] = stored(outputs)
    assert event["interaction_id"] is None
    assert outcome_of(outputs)["status"] == "appended"
    assert d.state().interactions == {}


# --- §9.4 probe cases ------------------------------------------------------------------------


def test_default_policy_cancels_and_purges_the_running_interaction() -> None:
    d = Driver()
    first = started(d)
    outputs = d.send({"type": "user_input", "thread_id": "t1", "payload": "next"})
    second = outcome_of(outputs)["interaction_id"]
    cancelled, active = interaction_records(outputs)
    assert (cancelled["interaction_id"], cancelled["state"], cancelled["previous_state"]) == (
        first,
        "cancelled",
        "active",
    )
    assert (active["interaction_id"], active["state"]) == (second, "active")
    assert d.states_of() == {second: "active"}  # auto_cleanup purged the cancelled one


def test_external_event_and_executor_output_without_id_start_interactions() -> None:
    d = Driver()
    assert d.event("external_event")["status"] == "started"
    assert d.event("assistant_output")["status"] == "started"
    assert d.event("artifact")["status"] == "started"


def test_null_payload_is_invalid_for_user_and_external_events_only() -> None:
    d = Driver()
    for type_ in ("user_input", "external_event"):
        outputs = d.send({"type": type_, "thread_id": "t1", "kind": "k", "payload": None})
        out = outcome_of(outputs)
        assert (out["status"], out["reason"]) == (
            "invalid",
            "payload must not be null for user/external events",
        )
        assert stored(outputs) == []
    iid = started(d)
    assert d.event("assistant_output", interaction_id=iid, payload=None)["status"] == "appended"


def test_unknown_interaction_is_not_found() -> None:
    d = Driver()
    out = d.command("resume", "nope")
    assert (out["status"], out["reason"]) == ("rejected", "Interaction not found: nope")
    assert d.command("add_task", "nope", task_id="t")["status"] == "rejected"
    out = d.event("assistant_output", interaction_id="nope")
    assert (out["status"], out["reason"]) == ("rejected", "Interaction not found: nope")
    assert not any(t == STORE for t, _ in d.log)


def test_terminal_interaction_cannot_be_resumed() -> None:
    d = Driver()
    iid = started(d)
    assert d.command("complete", iid)["status"] == "applied"
    out = d.command("resume", iid)
    assert (out["status"], out["reason"]) == (
        "rejected",
        f"interaction '{iid}' is terminal and cannot be resumed",  # the seed's own words
    )
    assert d.states_of()[iid] == "completed"
    out = d.command("pause", iid)  # any other command: the contract's words
    assert (out["status"], out["reason"]) == ("rejected", f"interaction '{iid}' is terminal")


def test_merge_stamps_the_running_interaction() -> None:
    d = Driver(default_policy="merge")
    first = started(d)
    outputs = d.send({"type": "user_input", "thread_id": "t1", "payload": "more"})
    assert (outcome_of(outputs)["status"], outcome_of(outputs)["interaction_id"]) == (
        "merged",
        first,
    )
    assert stored(outputs)[0]["interaction_id"] == first
    assert interaction_records(outputs) == []


def test_merge_with_nothing_active_starts_without_cancelling() -> None:
    d = Driver(default_policy="merge")
    waiting = started(d)
    d.command("wait_user", waiting)
    out = d.event("external_event")  # a user_input would resume the waiting one
    assert out["status"] == "started"
    assert sorted(d.states_of().values()) == ["active", "waiting_user"]


def test_merge_with_nothing_active_purges_no_terminal_interaction() -> None:
    # The seed's MergeIntoRunning path creates directly; only its interrupt path purges.
    d = Driver(default_policy="merge")
    waiting = started(d)
    d.command("wait_user", waiting)
    done = str(d.event("external_event")["interaction_id"])
    d.command("complete", done)
    out = d.event("external_event")  # busy (waiting_user), nothing active
    assert out["status"] == "started"
    assert d.states_of()[done] == "completed"
    out = d.command("cancel", done)
    assert (out["status"], out["reason"]) == ("rejected", f"interaction '{done}' is terminal")


def test_reject_when_busy_stores_the_event_with_its_own_interaction_id() -> None:
    d = Driver(default_policy="reject_when_busy")
    started(d)
    outputs = d.send(
        {"type": "user_input", "thread_id": "t1", "interaction_id": "orig", "payload": 1}
    )
    out = outcome_of(outputs)
    assert (out["status"], out["reason"]) == (
        "rejected",
        "System is busy processing another request",
    )
    assert stored(outputs)[0]["interaction_id"] == "orig"


def test_parallel_starts_four_then_rejects() -> None:
    d = Driver(default_policy="parallel")
    statuses = [d.event()["status"] for _ in range(6)]
    assert statuses == ["started"] * 4 + ["rejected"] * 2
    assert d.log[-1][1]["reason"] == "Maximum parallel interactions (4) reached"


def test_interrupt_with_max_one_and_no_cleanup_keeps_both() -> None:
    d = Driver(max_interactions_per_thread=1, auto_cleanup=False)
    first = started(d)
    second = started(d)
    assert d.states_of() == {first: "cancelled", second: "active"}


def test_external_event_resumes_the_waiting_event_interaction() -> None:
    d = Driver()
    iid = started(d)
    d.command("wait_event", iid)
    out = d.event("external_event", kind="anything")
    assert (out["status"], out["interaction_id"]) == ("resumed", iid)
