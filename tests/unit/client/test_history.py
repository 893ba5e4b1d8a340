"""`query_history` over the store alone: seq order, limits, and the store's rollback marks."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from processors.client.history import query_history
from processors.core import STORE, ids, replay
from tests.support.driver import ts

IIDS = ("i0", "i1", "i2")


def event(iid: str | None) -> dict[str, Any]:
    return {"type": "assistant_output", "thread_id": "t1", "interaction_id": iid, "payload": 1}


def mark(iid: str, **changes: Any) -> dict[str, Any]:
    """A thread-level lifecycle trace; `changes` make look-alikes that are not marks."""
    payload = {
        "category": "runtime_lifecycle",
        "event_type": "turn_rolled_back",
        "interaction_id": iid,
    }
    record: dict[str, Any] = {
        "type": "system_trace",
        "thread_id": "t1",
        "interaction_id": None,
        "level": "info",
        "payload": payload,
    }
    for key, value in changes.items():
        (payload if key in ("category", "event_type") else record)[key] = value
    return record


def numbered(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "seq": n} for n, r in enumerate(records, 1)]


def test_the_cores_rollback_leaves_the_turn_out_and_keeps_the_mark() -> None:
    first = ids.interaction_id("t1", "one")
    inputs: list[dict[str, Any]] = [
        {"type": "command", "command": "configure", "policy": "rollback", "auto_cleanup": False},
        {"type": "user_input", "payload": "one", "event_id": "one"},
        {"type": "user_input", "payload": "two", "event_id": "two"},
        # A late output of the rolled-back turn (still known: no cleanup) is left out too.
        event(first),
    ]
    inputs = [{"thread_id": "t1", "timestamp": ts(n), **r} for n, r in enumerate(inputs)]
    store = [r for t, r in replay(inputs) if t == STORE]
    assert [r["seq"] for r in store] == [1, 2, 3, 4]
    history = query_history(store)
    assert [(r["type"], r["seq"]) for r in history] == [("system_trace", 2), ("user_input", 3)]
    assert history[0]["payload"]["interaction_id"] == first


def test_only_a_thread_level_rollback_trace_is_a_mark() -> None:
    look_alikes = [
        mark("i0", interaction_id="i0"),  # an interaction's own trace
        mark("i0", event_type="turn_started"),
        mark("i0", category="execution_progress"),
        mark("i0", type="external_event"),
    ]
    store = numbered([event("i0"), *look_alikes])
    assert query_history(store) == store


records = st.lists(
    st.one_of(st.sampled_from((*IIDS, None)).map(event), st.sampled_from(IIDS).map(mark)),
    max_size=30,
).map(numbered)


@given(records, st.randoms(use_true_random=False), st.integers(0, 40))
def test_history_is_the_store_in_seq_order_without_rolled_back_turns(
    store: list[dict[str, Any]], random: Any, limit: int
) -> None:
    rolled_back = {r["payload"]["interaction_id"] for r in store if r["type"] == "system_trace"}
    expected = [r for r in store if r["interaction_id"] not in rolled_back]
    # Copies re-emitted after a crash, in any order, change nothing.
    read = store + random.sample(store, len(store) // 2)
    random.shuffle(read)
    assert query_history(read) == expected
    newest = query_history(read, limit)
    assert newest == (expected[::-1][:limit] if limit else expected)
    marks = [r for r in store if r["type"] == "system_trace"]
    assert [r for r in expected if r["type"] == "system_trace"] == marks
