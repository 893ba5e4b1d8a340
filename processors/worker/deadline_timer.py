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
- The commands are produced as input is, outside any transaction (`_produce` says why), and
  change nothing themselves: faust's `timer` cannot write tables, and needs not, the state
  changes when the command is read back and applied.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from config.settings import Settings
from processors.core import ThreadState, due_deadlines, earliest_deadline
from processors.kafka.connection import kafka_kwargs, start_client
from processors.worker import faust_compat
from processors.worker.metrics import Metrics
from schemas import timestamps
from schemas.codec import Codec

log = logging.getLogger("orchestral.worker")


class DeadlineTimer:
    def __init__(
        self,
        settings: Settings,
        app: Any,
        table: Any,
        codec: Codec,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.app = app
        self.table = table
        self.codec = codec
        self.metrics = metrics
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._earliest: dict[int, dict[str, int]] = {}  # partition -> thread -> deadline (ns)
        self._sent: dict[str, set[str]] = {}  # thread -> expire event ids produced for it
        self._producer: AIOKafkaProducer | None = None

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
        """One check. Never raises: an exception in a faust timer crashes the whole app, and
        a cluster that is away for a while is no reason to stop (the next tick tries again)."""
        if self.app.rebalancing or self.app.in_recovery:
            return
        try:
            await self._tick()
        except Exception as exc:
            log.warning("deadline check failed, tried again next tick: %r", exc)
            self.forget()

    async def _tick(self) -> None:
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
        """Produce the commands as any upstream producer does: not in a transaction. Written
        transactionally, each would put a transaction marker into the events topic, and faust
        counts the offset of a marker as a gap in what it acked: under exactly-once, outputs
        then committed without their offsets (measured: 168 to 3,563 identical duplicates in the
        SIGKILL scenario). A command produced twice (after a crash) is answered `duplicate` or
        applies as stale; either way the core decides from the committed input."""
        try:
            if self._producer is None:
                producer = AIOKafkaProducer(**kafka_kwargs(self.settings), acks="all")
                await start_client(producer, self.settings)
                self._producer = producer
            futures = [
                await self._producer.send(
                    self.settings.events_topic,
                    key=thread_id.encode(),
                    value=self.codec.encode(command),
                    partition=partition,
                )
                for partition, thread_id, command in commands
            ]
            await asyncio.gather(*futures)
        except Exception as exc:  # the cluster is away: the next tick tries again
            log.warning("deadlines not fired yet, the index is rebuilt: %r", exc)
            self.forget()
            return
        self.metrics.count("expires_sent", len(commands))

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
