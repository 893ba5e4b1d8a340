"""The executor's ledger: what starts, stops and steers, and how far commits may go."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processors.executor.ledger import Activation, Ledger, Start, Steer, Stop


def interaction(iid: str, state: str, cause: str = "c1", seq: int | None = 1) -> dict[str, Any]:
    event = None if seq is None else stored(iid, seq)
    return {
        "type": "interaction",
        "thread_id": "t1",
        "interaction_id": iid,
        "state": state,
        "previous_state": None,
        "cause_event_id": cause,
        "event": event if state == "active" else None,
    }


def stored(iid: str, seq: int, type_: str = "user_input") -> dict[str, Any]:
    return {
        "type": type_,
        "thread_id": "t1",
        "interaction_id": iid,
        "payload": {"message": f"m{seq}"},
        "seq": seq,
        "event_id": f"e{seq}",
    }


def live(partition: int = 0) -> Ledger:
    ledger = Ledger()
    assert ledger.assign(partition, 0, 0) == []
    return ledger


def test_active_starts_cancelled_stops_and_commits_wait_for_running_turns() -> None:
    ledger = live()
    (start,) = ledger.on_interaction(0, 5, interaction("i1", "active"))
    assert isinstance(start, Start) and start.activation.offset == 5
    ledger.caught_up(0, 9)
    assert ledger.commit_offset(0) == 5  # never past a running turn's `active` record
    assert ledger.on_interaction(0, 9, interaction("i1", "cancelled")) == [Stop("i1", "cancelled")]
    ledger.finished(start.activation)
    ledger.caught_up(0, 10)
    assert ledger.commit_offset(0) == 10


def test_a_duplicate_active_record_is_the_same_activation() -> None:
    ledger = live()
    (start,) = ledger.on_interaction(0, 1, interaction("i1", "active"))
    assert ledger.on_interaction(0, 2, interaction("i1", "active")) == []  # running
    ledger.finished(start.activation)  # type: ignore[union-attr]
    assert ledger.on_interaction(0, 3, interaction("i1", "active")) == []  # ran
    (resumed,) = ledger.on_interaction(0, 4, interaction("i1", "active", cause="c2", seq=3))
    assert isinstance(resumed, Start) and resumed.activation.cause == "c2"


def test_catch_up_starts_only_what_is_still_active_at_the_end() -> None:
    ledger = Ledger()
    assert ledger.assign(0, 10, 20) == []
    assert ledger.on_interaction(0, 10, interaction("done", "active")) == []
    assert ledger.on_interaction(0, 11, interaction("running", "active")) == []
    assert ledger.on_interaction(0, 12, interaction("done", "completed")) == []
    assert ledger.commit_offset(0) == 11  # still to run
    assert ledger.caught_up(0, 19) == []
    (start,) = ledger.caught_up(0, 20)
    assert isinstance(start, Start) and start.activation.interaction_id == "running"


def test_steers_reach_the_running_turn_and_wait_for_one_about_to_start() -> None:
    ledger = live()
    # Read from the store before the `active` record: kept, handed over at the start.
    assert ledger.on_store(0, stored("i1", 2)) == []
    assert ledger.on_store(0, stored("i1", 1)) == []  # the activating event itself
    (start,) = ledger.on_interaction(0, 0, interaction("i1", "active", seq=1))
    assert isinstance(start, Start) and [m.seq for m in start.steers] == [2]
    (steer,) = ledger.on_store(0, stored("i1", 3))
    assert isinstance(steer, Steer) and steer.message.text == "m3"
    assert ledger.on_store(0, stored("i1", 4, "assistant_output")) == []  # its own output


def test_a_revoked_partition_hands_back_its_running_turns() -> None:
    ledger = live(3)
    (start,) = ledger.on_interaction(3, 7, interaction("i1", "active"))
    assert ledger.revoke(3) == [start.activation]  # type: ignore[union-attr]
    assert ledger.commit_offset(3) is None
    assert ledger.on_interaction(3, 8, interaction("i2", "active")) == []  # not ours


def test_a_turn_left_at_a_rebalance_does_not_release_its_successor() -> None:
    ledger = live()
    (old,) = ledger.on_interaction(0, 4, interaction("i1", "active"))
    ledger.revoke(0)
    ledger.assign(0, 4, 5)  # back again: read from the same record
    assert ledger.on_interaction(0, 4, interaction("i1", "active")) == []  # catching up
    (new,) = ledger.caught_up(0, 5)
    ledger.finished(old.activation)  # type: ignore[union-attr]  # the old task ends late
    assert ledger.commit_offset(0) == 4  # the new turn still holds it
    ledger.finished(new.activation)  # type: ignore[union-attr]
    assert ledger.commit_offset(0) == 5


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["i1", "i2", "i3"]),
            st.sampled_from(["active", "waiting_user", "completed", "cancelled", "failed"]),
            st.booleans(),  # the executor finishes the turn right after
        ),
        max_size=30,
    )
)
def test_the_commit_never_passes_a_running_turn(steps: list[tuple[str, str, bool]]) -> None:
    ledger = live()
    running: dict[str, Activation] = {}
    for offset, (iid, state, finish) in enumerate(steps):
        record = interaction(iid, state, cause=f"c{offset}", seq=offset + 1)
        for action in ledger.on_interaction(0, offset, record):
            if isinstance(action, Start):
                running[iid] = action.activation
            elif isinstance(action, Stop):
                ledger.finished(running.pop(action.interaction_id))
        if finish and iid in running:
            ledger.finished(running.pop(iid))
        ledger.caught_up(0, offset + 1)
        committed = ledger.commit_offset(0)
        assert committed is not None
        assert all(committed <= a.offset for a in running.values())
        assert committed == min([offset + 1, *(a.offset for a in running.values())])
