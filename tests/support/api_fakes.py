"""An in-memory ThreadBackend and helpers for the thread API tests over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from config.settings import Settings
from processors.api import Owner, StreamMessage, Submitted

THREAD = "t1"
TS = "2026-01-01T00:00:00Z"


def stored(thread_id: str, seq: int, **fields: Any) -> dict[str, Any]:
    event = {
        "type": "user_input", "thread_id": thread_id, "interaction_id": None,
        "payload": {"message": f"m{seq}"}, "task_id": None, "step_id": None,
        "timestamp": TS, "seq": seq, "event_id": f"e{seq}",
    }  # fmt: skip
    event.update(fields)
    return event


def interaction(iid: str = "i1", state: str = "active") -> dict[str, Any]:
    return {
        "id": iid, "state": state, "started_at": TS, "ended_at": None, "task_ids": [],
        "wait_kind": None, "rolled_back": False, "cause_event_id": "e1",
    }  # fmt: skip


def thread_state(thread_id: str) -> dict[str, Any]:
    return {
        "thread_id": thread_id, "known": True,
        "policy": {"name": "interrupt", "max_parallel": 4, "max_queue_depth": 10,
                   "configured": False},
        "max_interactions_per_thread": 10, "auto_cleanup": True, "busy": True,
        "interactions": [interaction()], "queue": [{"event_id": "e9", "type": "user_input"}],
        "last_seq": 1, "updated_at": TS, "position": {"partition": 3, "offset": 7},
    }  # fmt: skip


def outcome_for(record: dict[str, Any], status: str = "started") -> dict[str, Any]:
    return {
        "type": "outcome", "thread_id": record["thread_id"], "source_event_id": record["event_id"],
        "status": status, "interaction_id": "i1", "reason": None, "queue_position": None,
        "timestamp": record["timestamp"],
    }  # fmt: skip


class FakeBackend:
    """Holds whatever a test puts in it; records what the routes asked for."""

    def __init__(self) -> None:
        self.owner_of: Owner = Owner(local=True)
        self.states: dict[str, dict[str, Any]] = {}
        self.handled: dict[str, int] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}  # oldest first
        self.interactions: dict[tuple[str, str], dict[str, Any]] = {}
        self.submitted: list[dict[str, Any]] = []
        self.answer_outcomes = True
        self.ready: tuple[bool, str | None] = (True, None)
        self.history_calls: list[dict[str, Any]] = []
        self.log: dict[str, list[StreamMessage]] = {}
        self.changed = asyncio.Event()
        self.open_streams = 0
        self.closed_streams = 0
        self.fail_with: Exception | None = None

    # --- test side ---
    def publish(self, thread_id: str, event: str, data: dict[str, Any]) -> StreamMessage:
        log = self.log.setdefault(thread_id, [])
        message = StreamMessage(id=f"{thread_id}:{len(log)}", event=event, data=data)  # type: ignore[arg-type]
        log.append(message)
        self.changed.set()
        self.changed = asyncio.Event()
        return message

    # --- ThreadBackend ---
    def owner(self, thread_id: str) -> Owner:
        return self.owner_of

    async def thread_state(self, thread_id: str) -> dict[str, Any] | None:
        if self.fail_with is not None:
            raise self.fail_with
        return self.states.get(thread_id)

    async def handled_offset(self, thread_id: str) -> int:
        return self.handled.get(thread_id, -1)

    async def history(
        self, thread_id: str, *, limit: int, before_seq: int | None, include_rolled_back: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        self.history_calls.append(
            {"limit": limit, "before_seq": before_seq, "include_rolled_back": include_rolled_back}
        )
        older = [
            e for e in reversed(self.events.get(thread_id, []))
            if before_seq is None or e["seq"] < before_seq
        ]  # fmt: skip
        page = older[:limit]
        return page, (page[-1]["seq"] if len(older) > limit else None)

    async def interaction(self, thread_id: str, interaction_id: str) -> dict[str, Any] | None:
        return self.interactions.get((thread_id, interaction_id))

    async def submit(self, record: dict[str, Any]) -> Submitted:
        self.submitted.append(record)
        return Submitted(record["event_id"], record["thread_id"], 3, len(self.submitted) - 1)

    async def outcome(
        self, thread_id: str, event_id: str, partition: int, offset: int, timeout: float
    ) -> dict[str, Any] | None:
        if self.answer_outcomes:
            return outcome_for(self.submitted[offset])
        await asyncio.sleep(timeout)
        return None

    async def stream(
        self, thread_id: str, after: str | None, from_beginning: bool
    ) -> AsyncIterator[StreamMessage]:
        self.open_streams += 1
        try:
            log = self.log.setdefault(thread_id, [])
            if after is not None:
                index = int(after.rpartition(":")[2]) + 1
            else:
                index = 0 if from_beginning else len(log)
            while True:
                while index < len(log):
                    yield log[index]
                    index += 1
                await self.changed.wait()
        finally:
            self.closed_streams += 1

    def readiness(self) -> tuple[bool, str | None]:
        return self.ready


def make_settings(**overrides: Any) -> Settings:
    return Settings(**{"api_token": None, "max_input_bytes": 1_000_000, **overrides})


Serve = Callable[..., Awaitable[str]]


async def read_sse(response: aiohttp.ClientResponse, count: int) -> list[dict[str, str]]:
    """The next `count` messages (comments are skipped) as {"id", "event", "data"}."""
    messages: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    while len(messages) < count:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if not line:
            if fields:
                messages.append(fields)
                fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value
    return messages
