"""The worker's side of the thread API (processors/api/): who owns a thread, and its reads.

A thread's partition is its events partition (murmur2 of its id). The worker that holds it
answers from its own state: the thread table for state and interactions, the thread log
(thread_log.py) for history and streams. Another worker's partitions are found in faust's
assignment metadata (every member advertises its URL, ORCHESTRAL_ADVERTISED_URL) and requests for
them are forwarded there by the routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from config.settings import THREAD_TABLE, Settings
from processors.api.backend import Owner, StreamMessage, Submitted
from processors.client.client import Client
from processors.client.thread_view import describe_state
from processors.core import ThreadState
from processors.worker import faust_compat
from processors.worker.handler import home_partition
from processors.worker.processing import BatchProcessor
from processors.worker.thread_log import Position, ThreadLog


class WorkerThreads:
    """`processors.api.backend.ThreadBackend`, served by this worker."""

    def __init__(
        self,
        settings: Settings,
        app: Any,
        table: Any,
        processor: BatchProcessor,
        thread_log: ThreadLog,
        partitions: int,
    ) -> None:
        self.settings = settings
        self.app = app
        self.table = table
        self.processor = processor
        self.log = thread_log
        self.partitions = partitions
        self.client = Client(settings)
        # event id -> the thread log's position when it was submitted: its outcome comes after.
        self._submitted: dict[str, Position] = {}

    def partition_of(self, thread_id: str) -> int:
        return home_partition(thread_id.encode(), self.partitions)

    def _owned(self) -> set[int]:
        topic = self.settings.events_topic
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}

    def _busy(self) -> str | None:
        if self.app.rebalancing:
            return "rebalancing"
        if self.app.in_recovery:
            return "restoring"
        return None

    def owner(self, thread_id: str) -> Owner:
        partition = self.partition_of(thread_id)
        busy = self._busy()
        if partition in self._owned():
            if busy is None and not self.log.ready(partition):
                busy = "restoring"
            return Owner(local=True, url=None, ready=busy is None, reason=busy)
        url = self._owner_url(partition)
        if url is None:
            return Owner(local=False, url=None, ready=False, reason=busy or "rebalancing")
        return Owner(local=False, url=url, ready=True, reason=None)

    def _owner_url(self, partition: int) -> str | None:
        changelog = self.settings.changelog_topic
        for url, topics in self.app.router.table_metadata(THREAD_TABLE).items():
            if partition in topics.get(changelog, ()):
                return str(url)
        return None

    def readiness(self) -> tuple[bool, str | None]:
        busy = self._busy()
        if busy is not None:
            return False, busy
        owned = self._owned()
        if not owned:
            return False, "starting: holds no partitions"
        if not all(self.log.ready(p) for p in owned):
            return False, "restoring"
        return True, None

    # --- reads -------------------------------------------------------------------------------

    def _state(self, thread_id: str) -> ThreadState | None:
        db = faust_compat.partition_db(self.table, self.partition_of(thread_id))
        data = db.get(thread_id.encode())
        return ThreadState.from_bytes(data) if data is not None else None

    async def thread_state(self, thread_id: str) -> dict[str, Any] | None:
        state = self._state(thread_id)
        return describe_state(state, self.settings) if state is not None else None

    async def handled_offset(self, thread_id: str) -> int:
        offset = self.processor.next_offset(self.partition_of(thread_id))
        return offset if offset is not None else 0

    async def history(
        self, thread_id: str, *, limit: int, before_seq: int | None, include_rolled_back: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        return self.log.history(
            thread_id, limit=limit, before_seq=before_seq, include_rolled_back=include_rolled_back
        )

    async def interaction(self, thread_id: str, interaction_id: str) -> dict[str, Any] | None:
        state = self._state(thread_id)
        found = state.interactions.get(interaction_id) if state is not None else None
        if found is None:
            return None
        return {
            "id": found.id,
            "state": found.state,
            "started_at": found.started_at,
            "ended_at": found.ended_at,
            "task_ids": list(found.task_ids),
            "wait_kind": found.wait_kind,
            "rolled_back": found.rolled_back,
            "cause_event_id": found.cause_event_id,
        }

    # --- writes ------------------------------------------------------------------------------

    async def submit(self, record: dict[str, Any]) -> Submitted:
        thread_id = str(record["thread_id"])
        before = self.log.latest(thread_id)
        delivery = await self.client.produce(record)
        event_id = str(delivery.record["event_id"])
        if len(self._submitted) > 10_000:  # waits that were never asked for
            self._submitted.clear()
        self._submitted[event_id] = before
        return Submitted(
            event_id=event_id,
            thread_id=thread_id,
            partition=delivery.partition,
            offset=delivery.offset,
        )

    async def outcome(
        self, thread_id: str, event_id: str, partition: int, offset: int, timeout: float
    ) -> dict[str, Any] | None:
        """The record's outcome: this worker owns the thread (requests are forwarded to the
        owner), so it is in, or about to reach, the thread log."""
        deadline = time.monotonic() + timeout
        before = self._submitted.pop(event_id, None) or self.log.latest(thread_id)
        with self.log.listen(thread_id) as live:
            for entry in self.log.after(thread_id, Position(2**62, before.outcomes)):
                if _answers(entry.record, event_id):
                    return entry.record
            while (left := deadline - time.monotonic()) > 0:
                try:
                    entry = await asyncio.wait_for(live.get(), left)
                except TimeoutError:
                    return None
                if _answers(entry.record, event_id):
                    return entry.record
        return None

    async def stream(
        self, thread_id: str, after: str | None, from_beginning: bool
    ) -> AsyncIterator[StreamMessage]:
        if after is not None:
            start = Position.parse(after)
        elif from_beginning:
            start = Position()
        else:
            start = self.log.latest(thread_id)
        async for position, entry in self.log.stream(thread_id, start):
            yield StreamMessage(id=str(position), event=entry.kind, data=entry.record)


def _answers(record: dict[str, Any], event_id: str) -> bool:
    return record.get("type") == "outcome" and record.get("source_event_id") == event_id
