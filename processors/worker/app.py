"""The Faust app: the events topic in, one agent, the thread table, the output topics.

The agent is a thin loop around `RecordHandler` (processors/worker/handler.py). Correctness does not
rest on faust's delivery features (see README, "Operating guarantees"):
- one agent, concurrency 1: records are handled one after the other, in partition order (faust
  #606 makes concurrency > 1 commit past in-flight records). They arrive in batches of what
  has been fetched (batches.py): a batch's outputs are queued as one producer batch per
  partition (output_batch.py) and its threads' states saved once, all before any of its
  records is acked;
- the thread state saved carries the outputs of records not yet committed, so a record re-read
  after a crash re-emits exactly what it produced (the core's replay rule);
- at-least-once: faust flushes the producer (outputs and changelog) before committing offsets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from functools import partial
from typing import Any, NoReturn, cast

import faust
from aiokafka.structs import TopicPartition
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.settings import THREAD_TABLE, Settings
from processors import exit_codes
from processors.core import Position, ThreadState
from processors.kafka.topics import Cluster, current_identity
from processors.worker.batches import drop_if_stale, ready_batches
from processors.worker.consumer import SafeConsumer
from processors.worker.handler import Handled, Headers, RecordHandler, forward, origin_of
from processors.worker.metrics import Metrics
from processors.worker.output_batch import OutputBatch, Queued, Target

log = logging.getLogger("orchestral.worker")


def broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in settings.bootstrap_servers.split(",") if host]


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust's own settings, derived from ours (faust's defaults are wrong for us, see why)."""
    from processors.kafka.connection import faust_credentials

    return {
        "broker": broker_urls(settings),
        "store": "rocksdb://",
        "datadir": str(settings.data_dir),
        "processing_guarantee": settings.processing_guarantee,
        "autodiscover": False,
        # faust binds 0.0.0.0 unless told otherwise.
        "web_bind": settings.web_host,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest",
        # faust's default session timeout makes a rejoin after a crash take tens of seconds.
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": max(1.0, settings.session_timeout / 4),
        "broker_commit_interval": settings.commit_interval,
        "producer_linger": 0.005,
        # Room for the largest output record plus the request's own framing.
        "producer_max_request_size": settings.max_output_bytes + 64 * 1024,
        "table_standby_replicas": 0,
        # After a crash, local RocksDB may hold writes the changelog lacks (an aborted
        # transaction, an unflushed send): faust calls that inconsistent and crashes. The core
        # makes it safe: the records behind those writes are re-read, recognised as replays,
        # re-emitted and re-saved (processors/worker/handler.py).
        "recovery_consistency_check": False,
        "key_serializer": "raw",
        "value_serializer": "raw",
        # SASL / TLS, from the same place as every other client's (processors/kafka/connection.py).
        "broker_credentials": faust_credentials(settings),
    }


class Worker:
    """Owns the app, the table, the handler and the metrics of one worker process."""

    def __init__(self, settings: Settings, cluster: Cluster) -> None:
        self.settings = settings
        self.cluster = cluster
        # Stamped on every position: a state built from an older incarnation of the events
        # topic is recognised as such (processors/worker/local_state.py, ThreadState.epoch).
        self.epoch = cluster.identity.epoch(settings.events_topic)
        self._identity_checked = 0.0  # monotonic time of the last check that found it unchanged
        self.handler = RecordHandler(settings)
        self.metrics = Metrics()
        # Under exactly-once, a commit must not interleave with a record: faust snapshots the
        # acked offsets, then commits the transaction over RPCs; a record handled meanwhile would
        # have its outputs committed without its offset (a duplicate after a crash).
        self.commit_gate: Any = (
            asyncio.Lock() if settings.processing_guarantee == "exactly_once" else nullcontext()
        )
        self.next_offsets: dict[Any, int] = {}  # per input partition: the next offset to handle
        # Under exactly-once: changelog partition -> last offset delivered since the last commit.
        self._delivered_changelog: dict[TP, int] = {}
        self.app = faust.App(settings.app_id, **faust_settings(settings))
        # Before faust creates its consumer: processors/worker/consumer.py says what it fixes.
        cast(Any, self.app.transport).Consumer = SafeConsumer
        self.events = self.app.topic(
            settings.events_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self._counter_of = {
            settings.store_topic: "store_out",
            settings.outcomes_topic: "outcomes_out",
            settings.dlq_topic: "dlq_out",
        }
        self.table = self.app.Table(
            THREAD_TABLE,
            default=None,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            # faust's defaults (64 MiB memtables x3 and a 2 GiB block cache per partition's
            # database) are sized for big servers; a worker here holds 8 partitions on 2 cores.
            options={
                "driver": "rocksdict",
                "write_buffer_size": 8 * 2**20,
                "max_write_buffer_number": 2,
                "target_file_size_base": 16 * 2**20,
                "block_cache_size": 16 * 2**20,
            },
            extra_topic_configs={"max.message.bytes": str(settings.max_output_bytes)},
        )
        self.app.agent(self.events, name="process", concurrency=1)(self.process)
        # cast: faust's receiver type is a union mypy cannot match a bound method against.
        self.app.on_partitions_revoked.connect(cast(Any, self.forget_positions))
        self.app.on_partitions_assigned.connect(cast(Any, self.forget_positions))
        self.app.on_partitions_assigned.connect(cast(Any, self._count_rebalance))
        self.app.timer(settings.progress_interval)(self.report_progress)
        registry = self.metrics.registry

        # faust installs a page function as a View method: (view, request), not a bound method.
        async def metrics_page(view: Any, request: Any) -> Any:
            # aiohttp refuses a charset inside content_type=; the header carries it whole.
            return view.bytes(
                generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        self.app.page("/metrics")(metrics_page)

    async def process(self, stream: Any) -> None:
        self._gate_commits()
        async for events in ready_batches(stream, self.settings.batch_max_records):
            async with self.commit_gate:
                try:
                    handled = await self.process_batch(events)
                except Exception:
                    # Not a bad record (those are dead-lettered): the worker itself failed.
                    # faust would restart the agent and commit past these unacked records, and
                    # a clean stop from inside the agent waits for the agent. Exit at once
                    # instead, like a SIGKILL: nothing of this batch is committed, and the
                    # restarted worker reads it again (the replay rule makes that safe).
                    log.exception("exiting: failed on %s:%s:%s", *_where_event(events[0]))
                    _exit(exit_codes.INTERNAL_ERROR)
                for event in handled:  # inside the gate: a commit sees a batch whole or not at all
                    event.ack()

    async def process_batch(self, events: list[Any]) -> list[Any]:
        """Handle a batch of records in order and hand everything they produce to the producer
        before any of them is acked, so it is flushed (at-least-once) or in the same transaction
        (exactly-once) as the commit of their offsets. Returns the events to ack."""
        started = time.perf_counter()
        out = OutputBatch(self._target_for)
        # The states the batch wrote, by (partition, key): read back by its later records, and
        # saved once per thread at the end (local RocksDB and one changelog record, produced
        # like the outputs). Not `table[key] = value`: faust sends that changelog record later
        # from a buffer its exactly-once commit does not drain, so the write could land in the
        # next transaction while these offsets commit in this one (a kill then loses it).
        states: dict[tuple[int, bytes], bytes] = {}
        handled = []
        suspicious = False
        for event in events:
            if drop_if_stale(self.app, event):
                continue  # read again after the rebalance's seek; not acked
            handled.append(event)
            suspicious |= self.process_one(event.message, out, states)
        if suspicious:
            await self._check_identity()
        for (partition, key), value in states.items():
            self._db_of(partition).put(key, value)
            out.add(self.settings.changelog_topic, partition, key, value)
        for queued in await out.send():
            queued.future.add_done_callback(partial(self._on_sent, queued))
        queued_at = time.time()
        for event in handled:  # from the record's Kafka timestamp to its outputs queued
            self.metrics.observe_latency(queued_at - event.message.timestamp)
        self.metrics.observe_batch(len(handled), time.perf_counter() - started)
        return handled

    def process_one(
        self, message: Any, out: OutputBatch, states: dict[tuple[int, bytes], bytes]
    ) -> bool:
        """Handle one record into `out` and `states`. True when it was read again (a replay or
        a redelivery): normal after a crash or rebalance, but also what a recreated topic looks
        like, so the batch checks the cluster's identity before it is acked."""
        if message.offset < self.next_offsets.get(message.tp, -1):
            # Delivered again within one assignment (faust's fetcher can hand out a record it
            # already gave, around recovery): this process already produced its outputs, maybe
            # committed them. Re-emitting would duplicate them even under exactly-once.
            self.metrics.count("redelivered")
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
            self.metrics.count("rerouted")
            return False

        def load(thread_id: str) -> ThreadState | None:
            key = thread_id.encode()
            data = states.get((partition, key))
            if data is None:
                data = self._db_of(partition).get(key)
            return ThreadState.from_bytes(data) if data is not None else None

        handled = self.handle(message.key, message.value, position, load, origin_of(headers))
        handled, state = self._within_size_limit(handled, message.key, message.value, position)
        if handled.status is not None:
            self.metrics.outcome(handled.status)
        counts: dict[str, int] = {}
        for record in handled.records:
            # On the input's partition: the key hashes there too (equal partition counts), and
            # a DLQ record stays beside the records read with it.
            out.add(record.topic, partition, record.key, record.value, record.headers)
            counts[record.topic] = counts.get(record.topic, 0) + 1
            if record.topic == self.settings.dlq_topic:
                self.metrics.dead_letter(dict(record.headers or ()).get("error", b""))
        for topic, n in counts.items():
            self.metrics.count(self._counter_of[topic], n)
        if state is not None and handled.thread_id is not None:
            states[(partition, handled.thread_id.encode())] = state
        return handled.replayed or handled.replay_missing

    def _db_of(self, partition: int) -> Any:
        """The partition's own RocksDB, used directly (a thread's key lives in its partition):
        faust's table API looks a key up twice, through several layers, per record."""
        return cast(Any, self.table.data)._db_for_partition(partition)

    def _within_size_limit(
        self, handled: Handled, key: bytes | None, value: bytes | None, position: Position
    ) -> tuple[Handled, bytes | None]:
        """The records to produce and the state to save; when one would be larger than the
        output topics accept, the input is dead-lettered instead and the thread stays as it
        was (the broker would refuse the record, and the partition would stop on it)."""
        state = None
        if handled.state is not None and handled.thread_id is not None:
            state = handled.state.to_bytes()
        sizes = [_size(r.key, r.value, r.headers) for r in handled.records]
        largest = max([*sizes, len(state or b"")])
        if largest <= self.settings.max_output_bytes:
            return handled, state
        self.metrics.count("too_large")
        error = OutputTooLarge(
            f"an output of this record would be {largest} bytes, over "
            f"ORCHESTRAL_MAX_OUTPUT_BYTES ({self.settings.max_output_bytes})"
        )
        log.error("%s:%s:%s: %s", *_where(position), error)
        return self.handler.dead_letter_internal(key, value, error, position), None

    def forget_positions(self, sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        """After a rebalance this process may have lost the transaction of records it handled:
        they are read again and must be handled (as replays) again."""
        self.next_offsets.clear()

    def _count_rebalance(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.metrics.rebalance()

    def _gate_commits(self) -> None:
        if not isinstance(self.commit_gate, asyncio.Lock):
            return
        consumer: Any = self.app.consumer  # faust's ConsumerT does not declare force_commit
        if getattr(consumer, "_orchestral_gated", False):
            return
        commit, gate = consumer.force_commit, self.commit_gate

        async def gated_commit(*args: Any, **kwargs: Any) -> Any:
            async with gate:
                committed = await commit(*args, **kwargs)
                self._persist_changelog_offsets(bool(committed))
                return committed

        consumer.force_commit = gated_commit
        consumer._orchestral_gated = True

    def _persist_changelog_offsets(self, committed: bool) -> None:
        """Under exactly-once: record, once their transaction committed, the changelog offsets
        the local store has, so a restart restores only the changelog after them.

        faust means to do this (`persist_offset_on_commit`) but looks its pending offsets up by
        the committed *input* partitions, while they are keyed by changelog partitions: they
        are never written, and every restart re-read the whole changelog (38.9 s for 100,000
        threads, against 1.9 s at-least-once). The gate makes this exact: no batch is sent
        while a commit runs, and a commit waits for every batch sent before it to be delivered,
        so the batches delivered since the last commit are all in the one it just committed.
        A failed commit aborts them: their offsets are dropped, not recorded.

        The offset recorded is the commit marker's, right after the transaction's last record in
        the partition (its only writer is the input partition's transactional producer; a zombie
        is fenced). faust's restore aims at the offset before the end, which under read_committed
        is that marker: it is never delivered, and recorded as the last record faust waited two
        empty 5-second polls for it on every restart.
        """
        delivered, self._delivered_changelog = self._delivered_changelog, {}
        if not committed:
            return
        store: Any = self.table.data  # a faust Store; typed as a plain mapping
        for tp, last in delivered.items():
            store.set_persisted_offset(tp, last + 1)

    def handle(
        self,
        key: bytes | None,
        value: bytes | None,
        position: Position,
        load: Callable[[str], ThreadState | None],
        origin: str | None = None,
    ) -> Handled:
        self.metrics.count("records_in")
        try:
            handled = self.handler.handle(
                key,
                value,
                position,
                load,
                committed_offset=self.committed(position),
                origin=origin,
            )
        except Exception as exc:  # a bug must not stop the partition: dead-letter, go on
            log.exception("internal error on %s:%s:%s", *_where(position))
            self.metrics.count("internal_errors")
            handled = self.handler.dead_letter_internal(key, value, exc, position)
        if handled.replayed:
            self.metrics.count("replayed")
        if handled.replay_missing:
            self.metrics.count("replay_missing")
            log.warning(
                "%s:%s:%s is at or before the offset thread %r last applied, but its outputs are "
                "not in the replay buffer: applied as a new record",
                *_where(position),
                handled.thread_id,
            )
        return handled

    async def _check_identity(self) -> None:
        """Exit if the cluster or the events topic is not the one the local state belongs to
        (wiped or recreated under the running worker): this batch is not acked, and the restart
        discards the local state (processors/worker/local_state.py). Checked at most once a second;
        while the cluster does not answer, the batch waits (it could not commit anyway)."""
        if time.monotonic() - self._identity_checked < 1.0:
            return
        while True:
            try:
                now = await current_identity(self.settings)
                break
            except Exception as exc:  # unreachable for now: its outputs cannot commit either
                log.warning("cannot check the cluster's identity yet: %s", exc)
                await asyncio.sleep(1.0)
        changes = now.differences(self.cluster.identity)
        if changes:
            log.error(
                "exiting: the cluster changed under the running worker (%s); a restart "
                "discards the local state built from the old one",
                "; ".join(changes),
            )
            _exit(exit_codes.TEMPFAIL)
        self._identity_checked = time.monotonic()

    def committed(self, position: Position) -> int | None:
        """The partition's committed offset as faust last committed it (a lower bound)."""
        committed = getattr(self.app.consumer, "_committed_offset", {})
        value = committed.get(TopicPartition(position.topic, position.partition))
        return value if isinstance(value, int) else None

    def _target_for(self, partition: int) -> Target:
        """The producer for the outputs of an input partition's records.

        Under exactly-once: the transaction of that input partition. faust would pick the
        transaction from the *consumer's* metadata, which knows only subscribed topics, so a
        plain `topic.send` to our output topics would silently leave the transaction.
        """
        producer: Any = self.app.producer  # faust's aiokafka driver: its producers are ours
        if not self.app.in_transaction:
            return producer._ensure_producer(), nullcontext()
        group = self.app.assignor.group_for_topic(self.settings.events_topic)
        transactional_id = f"{self.app.conf.id}-{group}-{partition}"
        transactional = producer._transaction_producers.get(transactional_id)
        if transactional is None:
            raise RuntimeError(f"no open transaction for input partition {partition}")
        return transactional, producer._trn_locks[transactional_id]

    def _on_sent(self, queued: Queued, future: asyncio.Future[Any]) -> None:
        """A batch of outputs delivered, or not.

        Not delivered (the producer gave up): exit before the offsets of its records can be
        committed. This callback runs before the commit's flush, which waits on the same batch,
        resumes; the restarted worker reads the records again.

        A changelog batch delivered: record the changelog offset the local store now has, as
        faust's own callback does (restore starts after it).
        """
        if future.cancelled():
            return  # the producer stopped (shutdown): nothing is committed after it
        error = future.exception()
        metadata = future.result() if error is None else None
        if metadata is None:
            # aiokafka answers None for a batch it dropped as empty without sending it: seen
            # once (all records of some batches lost in a SIGKILL run, never reproduced since).
            # Treated as not delivered.
            log.error(
                "exiting: %s record(s) to %s[%s] not delivered: %r",
                queued.count,
                queued.topic,
                queued.partition,
                error or "the producer confirmed no offset",
            )
            _exit(exit_codes.INTERNAL_ERROR)
        if queued.topic != self.settings.changelog_topic:
            return
        tp = TP(queued.topic, queued.partition)
        last = metadata.offset + queued.count - 1
        if self.app.in_transaction:  # recorded once the transaction commits
            self._delivered_changelog[tp] = max(last, self._delivered_changelog.get(tp, last))
        else:
            store: Any = self.table.data  # a faust Store; typed as a plain mapping
            store.set_persisted_offset(tp, last)

    async def report_progress(self) -> None:
        self.metrics.set_lag(self.lag())
        line = self.metrics.progress_line(time.monotonic())
        if line is not None:  # None: nothing changed, and it said so less than a minute ago
            log.info(line)

    def lag(self) -> dict[int, int]:
        """Per input partition: records not handled yet (as of the last fetch)."""
        consumer = self.app.consumer
        lag = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp) if tp.topic == self.settings.events_topic else None
            if highwater is not None:
                lag[tp.partition] = max(0, highwater - self.next_offsets.get(tp, highwater))
        return lag


# A clean stop commits and closes within a second or two; one that takes longer is stuck on a
# cluster that is gone or replaced (aiokafka retries its requests for minutes). Past this, the
# process exits like a SIGKILL: nothing more is committed, and the restart reads it again.
SHUTDOWN_DEADLINE = 10.0


class FaustWorker(faust.Worker):
    """faust's worker process, whose SIGTERM/SIGINT stop has a deadline."""

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stop_within_deadline, sig)

    def _stop_within_deadline(self, sig: signal.Signals) -> None:
        watchdog = threading.Timer(SHUTDOWN_DEADLINE, _stop_timed_out)
        watchdog.daemon = True
        watchdog.start()
        self._schedule_shutdown(sig)  # mode's own handler does only this


def _stop_timed_out() -> None:
    log.error("exiting: the worker did not stop within %.0f s of the signal", SHUTDOWN_DEADLINE)
    _exit(exit_codes.TEMPFAIL)


class OutputTooLarge(Exception):
    """An output record or thread state larger than the output topics accept."""


def _size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """A record's size as the broker counts it, to within its fixed framing."""
    framing = 128
    return (
        framing
        + len(key or b"")
        + len(value or b"")
        + sum(len(k) + len(v) for k, v in headers or ())
    )


def _headers(headers: Any) -> Headers:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), bytes(v or b"")) for k, v in items]


def _exit(code: int) -> NoReturn:
    logging.shutdown()
    os._exit(code)


def _where_event(event: Any) -> tuple[str, int, int]:
    return event.message.topic, event.message.partition, event.message.offset


def _where(position: Position) -> tuple[str, int, int]:
    return position.topic, position.partition, position.offset
