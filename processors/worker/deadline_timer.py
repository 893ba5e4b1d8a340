"""Deadlines of the worker's threads: found by a timer, fired as `expire` commands.

The core decides from logical time whether a deadline holds (processors/core/deadlines.py); the
worker only notices, by its clock, that one has passed and produces the contract's `expire`
command to the events topic, keyed by the thread, so that it is applied like any input and
replay stays a pure function of the committed input.

- An index per partition, ordered by deadline: a heap of (deadline, thread) and each thread's
  current earliest deadline (stale heap entries are skipped). Updated from the states each batch
  saves; rebuilt from the partition's RocksDB when the partition is (re)assigned and restored,
  so a deadline that passed while no worker owned the partition fires on the new owner.
- Every ORCHESTRAL_DEADLINE_INTERVAL a tick pops what is due, reads those threads' states and
  produces one `expire` per due deadline, once: its derived event id is remembered until the
  thread's state changes (a second copy after a restart is answered `duplicate`).
- Under exactly-once the commands go into the partition's transaction, inside the commit gate
  (checkpoint.py): faust's `timer` cannot write tables, and needs not: the state changes when
  the command is read back.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from config.settings import Settings
from processors.core import ThreadState, due_deadlines, earliest_deadline
from processors.worker import faust_compat
from processors.worker.checkpoint import Checkpoint
from processors.worker.metrics import Metrics
from processors.worker.output_batch import OutputBatch
from schemas import timestamps
from schemas.codec import Codec

log = logging.getLogger("orchestral.worker")


class DeadlineTimer:
    def __init__(
        self,
        settings: Settings,
        app: Any,
        table: Any,
        checkpoint: Checkpoint,
        codec: Codec,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.app = app
        self.table = table
        self.checkpoint = checkpoint
        self.codec = codec
        self.metrics = metrics
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._earliest: dict[int, dict[str, int]] = {}  # partition -> thread -> deadline (ns)
        self._sent: dict[str, set[str]] = {}  # thread -> expire event ids produced for it
        self.next_offsets: Callable[[int], int | None] | None = None

    def next_offset(self, partition: int) -> int | None:
        """The next events offset the batch loop would handle in `partition` (None: none yet);
        set by the worker (processing.py knows it)."""
        return self.next_offsets(partition) if self.next_offsets is not None else None

    def note(self, partition: int, thread_id: str, state: ThreadState) -> None:
        """A thread's state was saved: its earliest deadline, if any, goes into the index."""
        self._sent.pop(thread_id, None)  # the state changed: what is due is decided anew
        earliest = self._earliest.get(partition)
        if earliest is None:
            return  # not built yet: the rebuild reads the saved state
        self._index(partition, thread_id, earliest_deadline(state, self.limits))

    def forget(self) -> None:
        """After a rebalance: every partition's index is rebuilt once it is restored."""
        self._heaps.clear()
        self._earliest.clear()
        self._sent.clear()

    def _index(self, partition: int, thread_id: str, at: str | None) -> None:
        earliest = self._earliest[partition]
        if at is None:
            earliest.pop(thread_id, None)
            return
        nanos = timestamps.to_nanos(at)
        if earliest.get(thread_id) != nanos:
            earliest[thread_id] = nanos
            heapq.heappush(self._heaps[partition], (nanos, thread_id))

    def _rebuild(self, partition: int) -> None:
        started = time.perf_counter()
        self._heaps[partition], self._earliest[partition] = [], {}
        db = faust_compat.partition_db(self.table, partition)
        for key, value in db.items():
            try:
                state = ThreadState.from_bytes(value)
            except (ValueError, UnicodeDecodeError, IndexError, TypeError):
                continue  # faust's own keys (its offset) live here too
            self._index(partition, key.decode(), earliest_deadline(state, self.limits))
        log.info(
            "deadline index of partition %s: %d threads with deadlines (%.0f ms)",
            partition,
            len(self._earliest[partition]),
            (time.perf_counter() - started) * 1000,
        )

    async def tick(self) -> None:
        if self.app.rebalancing or self.app.in_recovery:
            return
        started = time.perf_counter()
        topic = self.settings.events_topic
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        now_nanos = time.time_ns()
        now = timestamps.from_nanos(now_nanos)
        commands: list[tuple[int, str, dict[str, Any]]] = []
        for partition in sorted(owned):
            if partition not in self._earliest:
                self._rebuild(partition)
            commands.extend(self._due(partition, now_nanos, now))
        if commands:
            await self._produce(commands)
        threads = sum(len(earliest) for earliest in self._earliest.values())
        self.metrics.observe_deadline_tick(time.perf_counter() - started, threads)

    def _due(
        self, partition: int, now_nanos: int, now: str
    ) -> list[tuple[int, str, dict[str, Any]]]:
        heap, earliest = self._heaps[partition], self._earliest[partition]
        db = faust_compat.partition_db(self.table, partition)
        due = []
        while heap and heap[0][0] <= now_nanos:
            nanos, thread_id = heapq.heappop(heap)
            if earliest.get(thread_id) != nanos:
                continue  # moved since: a newer entry stands for it
            del earliest[thread_id]
            data = db.get(thread_id.encode())
            if data is None:
                continue
            sent = self._sent.setdefault(thread_id, set())
            for deadline in due_deadlines(ThreadState.from_bytes(data), self.limits, now):
                command = deadline.expire_command(thread_id, now)
                if command["event_id"] not in sent:
                    sent.add(command["event_id"])
                    due.append((partition, thread_id, command))
        return due

    async def _produce(self, commands: list[tuple[int, str, dict[str, Any]]]) -> None:
        async with self.checkpoint.gate:
            out = OutputBatch(self.checkpoint.target_for)
            try:
                for partition, thread_id, command in commands:
                    value = self.codec.encode(command)
                    out.add(self.settings.events_topic, partition, thread_id.encode(), value)
                queued = await out.send()
                for batch in queued:
                    batch.future.add_done_callback(partial(self.checkpoint.delivered, batch))
                await asyncio.gather(*(batch.future for batch in queued))
                partitions = {partition for partition, _, _ in commands}
                await self.checkpoint.commit_idle({p: self.next_offset(p) for p in partitions})
            except RuntimeError as exc:  # no open transaction (a rebalance began)
                log.warning("deadlines not fired yet, the index is rebuilt: %s", exc)
                self.forget()
                return
        self.metrics.count("expires_sent", len(commands))
