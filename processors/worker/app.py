"""The Faust app: the events topic in, one agent, the thread table, the output topics.

The agent is a thin loop around the batch loop (processing.py). Correctness does not rest on
faust's delivery features (see README, "Operating guarantees"):
- one agent, concurrency 1: records are handled one after the other, in partition order (faust
  #606 makes concurrency > 1 commit past in-flight records), in batches of what has been fetched
  (batches.py), each whole inside the commit protocol (checkpoint.py);
- the thread state saved carries the outputs of records not yet committed, so a record re-read
  after a crash re-emits exactly what it produced (the core's replay rule);
- a failure of the worker itself exits the process before anything of the batch is committed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from functools import partial
from typing import Any, NoReturn, cast

import faust
from faust.auth import SASLCredentials, SSLCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.settings import THREAD_TABLE, Settings
from processors import exit_codes
from processors.api import add_routes
from processors.kafka.connection import sasl_password, ssl_context, uses_sasl
from processors.worker import faust_compat, gc_pauses
from processors.worker.batches import ready_batches
from processors.worker.changelog_restore import ChangelogRestore
from processors.worker.checkpoint import Checkpoint
from processors.worker.cluster_identity import Cluster
from processors.worker.consumer import SafeConsumer
from processors.worker.deadline_timer import DeadlineTimer
from processors.worker.metrics import Metrics
from processors.worker.output_batch import Queued
from processors.worker.processing import BatchProcessor
from processors.worker.thread_api import WorkerThreads
from processors.worker.thread_log import ThreadLog

log = logging.getLogger("orchestral.worker")


def broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{host}:{port}" for host, port in settings.bootstrap_addresses]


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust's own settings, derived from ours (faust's defaults are wrong for us, see why)."""
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
        # Where the other workers forward thread API requests for this one's partitions.
        "canonical_url": settings.advertised_url,
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


def faust_credentials(settings: Settings) -> Any:
    """faust's `broker_credentials` for these settings (None for PLAINTEXT).

    faust-streaming 0.15 maps SASLCredentials (any SASLMechanism, SCRAM-SHA-512 included) and
    SSLCredentials onto the same aiokafka arguments as `kafka_kwargs`, for its consumer, its
    producers (transactional ones too) and the client it creates topics with.
    """
    context = ssl_context(settings)
    if uses_sasl(settings):
        return SASLCredentials(
            username=settings.sasl_username,
            password=sasl_password(settings),
            ssl_context=context,  # SASL_SSL when set, else SASL_PLAINTEXT
            mechanism=settings.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


class Worker:
    """One worker process: the faust app and table, wired to the batch loop and the metrics."""

    def __init__(
        self, settings: Settings, cluster: Cluster, *, events_recreated: bool = False
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.app = faust.App(settings.app_id, **faust_settings(settings))
        # Before faust creates its consumer: consumer.py says what it fixes.
        cast(Any, self.app.transport).Consumer = SafeConsumer
        self.events = self.app.topic(
            settings.events_topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
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
        self.checkpoint = Checkpoint(self.app, self.table, settings, _exit)
        self._settle_gc = True  # on the next batch, and after each assignment (gc_pauses.py)
        # Half faust's request timeout: faust waits for it within that (changelog_restore.py).
        restore = ChangelogRestore(
            settings,
            partial(faust_compat.partition_db, self.table),
            faust_compat.persisted_offset_key(),
            budget=self.app.conf.broker_request_timeout / 2,
        )
        faust_compat.restore_before_recovery(self.app, restore.restore)
        self.processor = BatchProcessor(
            settings, cluster, self.app, self.table, self.checkpoint, self.metrics, _exit
        )
        if events_recreated:
            self.processor.verify_start_of_every_partition()
        self.deadlines = DeadlineTimer(
            settings, self.app, self.table, self.processor.handler.codec, self.metrics
        )
        self.processor.on_saved = self.deadlines.note
        self.thread_log = ThreadLog(settings, hold=lambda: bool(self.app.in_recovery))
        self.checkpoint.on_visible = self._show
        self.threads = WorkerThreads(
            settings,
            self.app,
            self.table,
            self.processor,
            self.thread_log,
            cluster.events_partitions,
        )
        # The thread API (processors/api/), on faust's own aiohttp app, before it starts.
        add_routes(cast(Any, self.app.web).web_app, self.threads, settings)  # aiohttp's app
        self.app.task(self.thread_log.start)
        self.app.agent(self.events, name="process", concurrency=1)(self.process)
        # cast: faust's receiver type is a union mypy cannot match a bound method against.
        forget = cast(Any, self.processor.forget_positions)
        self.app.on_partitions_revoked.connect(forget)
        self.app.on_partitions_assigned.connect(forget)
        self.app.on_partitions_assigned.connect(cast(Any, self._count_rebalance))
        self.app.on_partitions_assigned.connect(cast(Any, self._settle_gc_next))
        self.app.on_partitions_assigned.connect(cast(Any, self._follow_partitions))
        self.app.on_partitions_revoked.connect(cast(Any, self._follow_partitions))
        self.app.timer(settings.progress_interval)(self.report_progress)
        self.app.timer(settings.deadline_interval)(self.deadlines.tick)
        registry = self.metrics.registry

        # faust installs a page function as a View method: (view, request), not a bound method.
        async def metrics_page(view: Any, request: Any) -> Any:
            # aiohttp refuses a charset inside content_type=; the header carries it whole.
            return view.bytes(
                generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        self.app.page("/metrics")(metrics_page)

    async def process(self, stream: Any) -> None:
        cast(SafeConsumer, self.app.consumer).checkpoint = self.checkpoint
        async for events in ready_batches(stream, self.settings.batch_max_records):
            if self._settle_gc:  # the first batch after an assignment: faust's objects exist
                self._settle_gc = False
                gc_pauses.settle()
            async with self.checkpoint.gate:
                try:
                    handled = await self.processor.process_batch(events)
                except Exception:
                    # Not a bad record (those are dead-lettered): the worker itself failed.
                    # faust would restart the agent and commit past these unacked records, and
                    # a clean stop from inside the agent waits for the agent. Exit at once
                    # instead, like a SIGKILL: nothing of this batch is committed, and the
                    # restarted worker reads it again (the replay rule makes that safe).
                    message = events[0].message
                    log.exception(
                        "exiting: failed on %s:%s:%s",
                        message.topic,
                        message.partition,
                        message.offset,
                    )
                    _exit(exit_codes.INTERNAL_ERROR)
                for event in handled:  # inside the gate: a commit sees a batch whole or not at all
                    event.ack()

    def _show(self, queued: Queued, offset: int, transactional: bool) -> None:
        self.thread_log.show(queued.topic, queued.partition, offset, queued.kept, transactional)

    def _count_rebalance(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.metrics.rebalance()
        self.deadlines.forget()

    def _settle_gc_next(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self._settle_gc = True  # the assignment's objects exist by its first batch

    def _follow_partitions(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """The thread log follows the store and outcome partitions of the events partitions
        this worker holds now (a revocation first empties them: faust's eager protocol)."""
        topic = self.settings.events_topic
        held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == topic}
        self.thread_log.assign(held)

    async def report_progress(self) -> None:
        await self.processor.check_identity()
        self.metrics.set_lag(self.processor.lag())
        line = self.metrics.progress_line(time.monotonic())
        if line is not None:  # None: nothing changed, and it said so less than a minute ago
            log.info(line)


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
        faust_compat.schedule_shutdown(self, sig)


def _stop_timed_out() -> None:
    log.error("exiting: the worker did not stop within %.0f s of the signal", SHUTDOWN_DEADLINE)
    _exit(exit_codes.TEMPFAIL)


def _exit(code: int) -> NoReturn:
    logging.shutdown()
    os._exit(code)
