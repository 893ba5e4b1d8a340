"""The batch loop: a batch of fetched records in, their outputs and states queued, in order.

For each record of a batch (`process_one`): skip a redelivery, forward a record that is on
another partition than its thread's, else run the record handler (handler.py) against the
thread's state, the batch's own writes first. Then (`process_batch`) save each thread's state
once, in the partition's RocksDB and as one changelog record, and queue every output as one
producer batch per topic-partition (output_batch.py), all before any record is acked
(checkpoint.py says why that is the commit protocol).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NoReturn

from config.settings import Settings
from processors import exit_codes
from processors.core import Position, ThreadState
from processors.worker import faust_compat
from processors.worker.batches import drop_if_stale
from processors.worker.checkpoint import Checkpoint
from processors.worker.cluster_identity import Cluster, current_identity
from processors.worker.handler import Handled, RecordHandler, forward, origin_of
from processors.worker.metrics import Metrics
from processors.worker.output_batch import Headers, OutputBatch

log = logging.getLogger("orchestral.worker")

# The states a batch wrote, by (partition, thread key): read back by its later records.
States = dict[tuple[int, bytes], bytes]


class BatchProcessor:
    def __init__(
        self,
        settings: Settings,
        cluster: Cluster,
        app: Any,
        table: Any,
        checkpoint: Checkpoint,
        metrics: Metrics,
        exit: Callable[[int], NoReturn],
    ) -> None:
        self.settings = settings
        self.cluster = cluster
        self.app = app
        self.table = table
        self.checkpoint = checkpoint
        self.metrics = metrics
        self._exit = exit
        self.handler = RecordHandler(settings)
        # Stamped on every position: a state built from an older incarnation of the events
        # topic is recognised as such (local_state.py, ThreadState.epoch).
        self.epoch = cluster.identity.epoch(settings.events_topic)
        self._identity_checked = 0.0  # monotonic time of the last check that found it unchanged
        # Partitions whose first record must show it is not reading from a stale group offset.
        self._unverified: set[int] = set()
        # Told of each thread state a batch saves (the deadline timer's index).
        self.on_saved: Callable[[int, str, ThreadState], None] | None = None
        self.next_offsets: dict[Any, int] = {}  # per input partition: the next offset to handle
        self._counter_of = {
            settings.store_topic: "store_out",
            settings.outcomes_topic: "outcomes_out",
            settings.dlq_topic: "dlq_out",
        }
        # A batch's counts, added to the metrics once at its end (a Prometheus increment takes
        # a lock: per record, several of them cost more than the record's own counting).
        self._counts: Counter[str] = Counter()
        self._outcomes: Counter[str] = Counter()
        # Kept with their outputs once queued: the thread log indexes them once delivered.
        self._kept_topics = frozenset((settings.store_topic, settings.outcomes_topic))

    async def process_batch(self, events: list[Any]) -> list[Any]:
        """Handle a batch of records in order and hand everything they produce to the producer
        before any of them is acked, so it is flushed (at-least-once) or in the same transaction
        (exactly-once) as the commit of their offsets. Returns the events to ack."""
        started = time.perf_counter()
        out = OutputBatch(self.checkpoint.target_for, self._kept_topics)
        # Saved once per thread at the end (local RocksDB and one changelog record, produced
        # like the outputs). Not `table[key] = value`: faust sends that changelog record later
        # from a buffer its exactly-once commit does not drain, so the write could land in the
        # next transaction while these offsets commit in this one (a kill then loses it).
        states: States = {}
        saved: dict[tuple[int, str], ThreadState] = {}  # the same states, for the deadlines
        handled = []
        suspicious = False
        if self._unverified:
            events = await self._start_of_recreated(events)
        try:
            for event in events:
                if drop_if_stale(self.app, event):
                    continue  # read again after the rebalance's seek; not acked
                handled.append(event)
                suspicious |= self.process_one(event.message, out, states, saved)
        finally:
            self._flush_counts()
        if suspicious:
            await self._check_identity()
        for (partition, key), value in states.items():
            faust_compat.partition_db(self.table, partition).put(key, value)
            out.add(self.settings.changelog_topic, partition, key, value)
        if self.on_saved is not None:
            for (partition, thread_id), state in saved.items():
                self.on_saved(partition, thread_id, state)
        for queued in await out.send():
            queued.future.add_done_callback(partial(self.checkpoint.delivered, queued))
        queued_at = time.time()
        for event in handled:  # from the record's Kafka timestamp to its outputs queued
            self.metrics.observe_latency(queued_at - event.message.timestamp)
        self.metrics.observe_batch(len(handled), time.perf_counter() - started)
        return handled

    def process_one(
        self,
        message: Any,
        out: OutputBatch,
        states: States,
        saved: dict[tuple[int, str], ThreadState] | None = None,
    ) -> bool:
        """Handle one record into `out` and `states`. True when it was read again (a replay or
        a redelivery): normal after a crash or rebalance, but also what a recreated topic looks
        like, so the batch checks the cluster's identity before it is acked."""
        if message.offset < self.next_offsets.get(message.tp, -1):
            # Delivered again within one assignment (faust's fetcher can hand out a record it
            # already gave, around recovery): this process already produced its outputs, maybe
            # committed them. Re-emitting would duplicate them even under exactly-once.
            self._counts["redelivered"] += 1
            return True
        partition = message.partition
        position = Position(message.topic, partition, message.offset, self.epoch)
        self.next_offsets[message.tp] = message.offset + 1
        headers = _headers(message.headers)
        forwarded = forward(message.key, headers, position, self.cluster.events_partitions)
        if forwarded is not None:
            # Not this partition's thread: handled on its own partition, after what is there.
            home, new_headers = forwarded
            out.add(message.topic, home, message.key, message.value, new_headers, via=partition)
            self._counts["rerouted"] += 1
            return False

        def load(thread_id: str) -> ThreadState | None:
            key = thread_id.encode()
            data = states.get((partition, key))
            if data is None:
                data = faust_compat.partition_db(self.table, partition).get(key)
            return ThreadState.from_bytes(data) if data is not None else None

        handled = self.handler.handle_safely(
            message.key,
            message.value,
            position,
            load,
            committed_offset=self.checkpoint.committed(position),
            origin=origin_of(headers),
        )
        self._count(handled, position)
        for record in handled.records:
            # On the input's partition: the key hashes there too (equal partition counts), and
            # a DLQ record stays beside the records read with it.
            out.add(
                record.topic,
                partition,
                record.key,
                record.value,
                record.headers,
                record=record.record,
            )
        if handled.state_bytes is not None and handled.thread_id is not None:
            states[(partition, handled.thread_id.encode())] = handled.state_bytes
            if saved is not None and handled.state is not None:
                saved[(partition, handled.thread_id)] = handled.state
        return handled.replayed or handled.replay_missing

    def _flush_counts(self) -> None:
        for name, n in self._counts.items():
            self.metrics.count(name, n)
        for status, n in self._outcomes.items():
            self.metrics.outcome(status, n)
        self._counts.clear()
        self._outcomes.clear()

    def _count(self, handled: Handled, position: Position) -> None:
        counts = self._counts
        counts["records_in"] += 1
        for flag, name in (
            (handled.internal_error, "internal_errors"),
            (handled.too_large, "too_large"),
            (handled.replayed, "replayed"),
            (handled.replay_missing, "replay_missing"),
        ):
            if flag:
                counts[name] += 1
        if handled.replay_missing:
            log.warning(
                "%s:%s:%s is at or before the offset thread %r last applied, but its outputs are "
                "not in the replay buffer: applied as a new record",
                position.topic,
                position.partition,
                position.offset,
                handled.thread_id,
            )
        if handled.status is not None:
            self._outcomes[handled.status] += 1
        counter_of, dlq = self._counter_of, self.settings.dlq_topic
        for record in handled.records:
            counts[counter_of[record.topic]] += 1
            if record.topic == dlq:
                self.metrics.dead_letter(dict(record.headers or ()).get("error", b""))

    async def _check_identity(self) -> None:
        """Exit if the cluster or the events topic is not the one the local state belongs to
        (wiped or recreated under the running worker): this batch is not acked, and the restart
        discards the local state (local_state.py). Checked at most once a second; while the
        cluster does not answer, the batch waits (it could not commit anyway)."""
        if time.monotonic() - self._identity_checked < 1.0:
            return
        while not await self.check_identity():
            await asyncio.sleep(1.0)

    async def check_identity(self) -> bool:
        """One check (see `_check_identity`); False when the cluster did not answer. Also run
        every progress interval: a reset offset is not always a record read again (faust drops
        a record below its read offset unseen), so a replaced cluster shows no other way."""
        try:
            now = await current_identity(self.settings)
        except Exception as exc:  # unreachable for now: its outputs cannot commit either
            log.warning("cannot check the cluster's identity yet: %s", exc)
            return False
        changes = now.differences(self.cluster.identity)
        if changes:
            log.error(
                "exiting: the cluster changed under the running worker (%s); a restart "
                "discards the local state built from the old one",
                "; ".join(changes),
            )
            self._exit(exit_codes.TEMPFAIL)
        self._identity_checked = time.monotonic()
        return True

    def next_offset(self, partition: int) -> int | None:
        """The next offset of the events partition to handle; None if none was handled since
        the assignment."""
        for tp, offset in self.next_offsets.items():
            if tp.partition == partition and tp.topic == self.settings.events_topic:
                return int(offset)
        return None

    def verify_start_of_every_partition(self) -> None:
        self._unverified = set(range(self.cluster.events_partitions))

    async def _start_of_recreated(self, events: list[Any]) -> list[Any]:
        """The events topic was deleted and recreated while the consumer group's offsets
        survived (seen with Kafka 4.4: the old topic's committed offsets apply to the new one):
        records of the new topic below them would be skipped unseen. At a partition's first
        record: if no thread state of this partition comes from the new topic (its epoch) and
        the record is not at 0, the group's offset is the old topic's, and the partition is read
        again from 0. The events of those partitions are dropped (not acked) meanwhile."""
        restarted = set()
        for event in events:
            partition = event.message.partition
            if partition not in self._unverified:
                continue
            self._unverified.discard(partition)
            if event.message.offset > 0 and not self._has_new_states(partition):
                log.warning(
                    "%s[%s] starts at offset %s, the consumer group's offset of the events topic "
                    "before it was recreated: reading it from 0",
                    event.message.topic,
                    partition,
                    event.message.offset,
                )
                await self.app.consumer.seek(event.message.tp, 0)
                restarted.add(partition)
        dropped = [e for e in events if e.message.partition in restarted]
        for event in dropped:  # off faust's in-flight set, as drop_if_stale does (batches.py)
            self.app.consumer.unacked.discard(event.message)
        return [e for e in events if e.message.partition not in restarted]

    def _has_new_states(self, partition: int) -> bool:
        for _, value in faust_compat.partition_db(self.table, partition).items():
            try:
                if ThreadState.from_bytes(value).epoch == self.epoch:
                    return True
            except (ValueError, UnicodeDecodeError, IndexError, TypeError):
                continue  # faust's own keys
        return False

    def forget_positions(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """After a rebalance this process may have lost the transaction of records it handled:
        they are read again and must be handled (as replays) again."""
        self.next_offsets.clear()

    def lag(self) -> dict[int, int]:
        """Per input partition: records not handled yet (as of the last fetch)."""
        consumer = self.app.consumer
        lag = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp) if tp.topic == self.settings.events_topic else None
            if highwater is not None:
                lag[tp.partition] = max(0, highwater - self.next_offsets.get(tp, highwater))
        return lag


def _headers(headers: Any) -> Headers:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), bytes(v or b"")) for k, v in items]
