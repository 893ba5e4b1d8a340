"""A turn's records: derived ids, nothing after it settles or is stopped, steers once each."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from processors.executor import Turn, TurnOver
from processors.executor.ledger import Activation
from processors.executor.messages import message_of

EVENT = {"type": "user_input", "thread_id": "t1", "interaction_id": "i1", "seq": 4}


def turn(sent: list[dict[str, Any]]) -> Turn:
    async def send(record: Mapping[str, Any]) -> None:
        sent.append(dict(record))

    activation = Activation("t1", "i1", "e4", {**EVENT, "payload": {"text": "hi"}}, 0, 9)
    return Turn(activation, [], send, lambda: "2026-12-01T00:00:00Z")


def test_records_have_ids_derived_from_interaction_activation_and_step() -> None:
    sent: list[dict[str, Any]] = []
    t = turn(sent)
    assert t.text == "hi"

    async def run() -> None:
        await t.say("a")
        await t.heartbeat()
        await t.artifact("ref")
        await t.complete()

    asyncio.run(run())
    assert [r.get("event_id") for r in sent] == [
        "exec:i1:e4:1",
        None,
        "exec:i1:e4:2",
        "exec:i1:e4:3",
    ]
    assert sent[0]["payload"] == {"content": "a"} and sent[1]["command"] == "heartbeat"
    assert sent[3] == {
        "type": "command",
        "thread_id": "t1",
        "command": "complete",
        "interaction_id": "i1",
        "timestamp": "2026-12-01T00:00:00Z",
        "event_id": "exec:i1:e4:3",
    }


def test_nothing_is_sent_after_the_turn_settles_or_is_stopped() -> None:
    sent: list[dict[str, Any]] = []
    t = turn(sent)

    async def run() -> None:
        await t.wait_user(timeout=30)
        with pytest.raises(TurnOver):
            await t.say("late")
        await t.heartbeat()  # no heartbeat once it waits
        stopped = turn(sent)
        stopped.stopped = True
        with pytest.raises(asyncio.CancelledError):
            await stopped.say("after cancel")

    asyncio.run(run())
    assert [(r["command"], r["timeout"]) for r in sent] == [("wait_user", 30)]


def test_steers_arrive_once_each_and_not_after_it_settles() -> None:
    t = turn([])
    merged = message_of({**EVENT, "seq": 5, "payload": {"message": "also"}})
    t.deliver(merged)
    t.deliver(merged)  # the same seq again (stream and history both had it)
    assert [m.text for m in t.steers()] == ["also"]
    assert t.steers() == []

    async def run() -> None:
        assert await t.next_steer(timeout=0.01) is None
        t.deliver(message_of({**EVENT, "seq": 6, "payload": "next"}))
        found = await t.next_steer(timeout=1)
        assert found is not None and found.text == "next"
        await t.complete()
        t.deliver(message_of({**EVENT, "seq": 7, "payload": "too late"}))
        assert t.steers() == []

    asyncio.run(run())
