"""The commit protocol: when a batch's outputs, its threads' states and its offsets become one.

A batch of input records is handled, its outputs and state changes queued in the producer, then
its records acked; faust commits the acked offsets every ORCHESTRAL_COMMIT_INTERVAL. What makes
that safe:

1. **One batch at a time, whole** (`gate`). Under exactly-once, a commit must not interleave with
   a batch: faust snapshots the acked offsets, then commits the transaction over RPCs; a record
   handled meanwhile would have its outputs committed without its offset (a duplicate after a
   crash; faust-streaming #517, #323). The agent holds the gate from the first record of a batch
   to its last ack; `SafeConsumer.force_commit` takes it around faust's commit.
2. **Outputs in the input partition's transaction** (`target_for`). faust picks a send's
   transaction from the consumer's metadata, which knows only subscribed topics, so a plain
   `topic.send` to our output topics would silently leave the transaction (faust-streaming #177
   family). Each batch goes to the producer of its input partition's transaction; at-least-once,
   to faust's plain producer, which faust flushes before it commits.
3. **State written as outputs are** (processing.py): the changelog record of a thread's state is
   queued like any output, before the ack, not through `table[key] = value`, whose buffer faust's
   exactly-once commit does not drain.
4. **A batch not delivered stops the worker** (`delivered`): before its offsets can commit.
5. **Changelog offsets recorded once committed** (`delivered`, `_after_commit`):
   so a restart restores only the changelog's tail.
6. **Outputs shown once visible** (`on_visible`): a delivered store or outcome batch is handed
   to the thread log with its first offset, at-least-once on delivery, under exactly-once once
   its transaction has committed (what a read_committed consumer would see, no sooner).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, NoReturn

from aiokafka.structs import TopicPartition
from faust.types import TP

from config.settings import Settings
from processors import exit_codes
from processors.core import Position
from processors.worker import faust_compat
from processors.worker.output_batch import Queued, Target

log = logging.getLogger("orchestral.worker")


class Checkpoint:
    def __init__(self, app: Any, table: Any, settings: Settings, exit: Callable[[int], NoReturn]):
        self.app = app
        self.table = table
        self.settings = settings
        self._exit = exit
        self.gate: AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if settings.processing_guarantee == "exactly_once" else nullcontext()
        )
        # Under exactly-once: changelog partition -> last offset delivered since the last commit.
        self._delivered_changelog: dict[TP, int] = {}
        # Told of each delivered batch with kept records (step 6): the batch, its first offset,
        # whether it was in a transaction (then its commit marker follows the transaction).
        self.on_visible: Callable[[Queued, int, bool], None] | None = None
        self._delivered_kept: list[tuple[Queued, int]] = []  # under exactly-once, until commit

    async def commit(self, force_commit: Callable[[], Awaitable[Any]]) -> Any:
        """faust's commit, inside the gate (step 1); then steps 5 and 6."""
        if isinstance(self.gate, nullcontext):
            return await force_commit()
        async with self.gate:
            try:
                committed = await force_commit()
            except BaseException:  # its transactions abort: nothing of them is recorded or shown
                self._after_commit(False)
                raise
            self._after_commit(bool(committed))
            return committed

    def target_for(self, partition: int) -> Target:
        """The producer for the outputs of an input partition's records (step 2)."""
        producer: Any = self.app.producer  # faust's aiokafka driver: its producers are ours
        if not self.app.in_transaction:
            return faust_compat.plain_producer(producer), nullcontext()
        group = self.app.assignor.group_for_topic(self.settings.events_topic)
        target = faust_compat.transaction_producer(
            producer, f"{self.app.conf.id}-{group}-{partition}"
        )
        if target is None:
            raise RuntimeError(f"no open transaction for input partition {partition}")
        return target

    def committed(self, position: Position) -> int | None:
        """The partition's committed offset as faust last committed it (a lower bound): the
        replay buffer needs nothing before it."""
        committed = faust_compat.committed_offsets(self.app.consumer)
        value = committed.get(TopicPartition(position.topic, position.partition))
        return value if isinstance(value, int) else None

    def delivered(self, queued: Queued, future: asyncio.Future[Any]) -> None:
        """A batch of outputs delivered, or not (a done callback of its future).

        Not delivered (the producer gave up): exit before the offsets of its records can be
        committed (step 4). This callback runs before the commit's flush, which waits on the
        same batch, resumes; the restarted worker reads the records again.

        A changelog batch delivered: record the changelog offset the local store now has, as
        faust's own callback does (restore starts after it); under exactly-once once its
        transaction has committed.
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
            self._exit(exit_codes.INTERNAL_ERROR)
        if queued.kept and self.on_visible is not None:
            if self.app.in_transaction:
                self._delivered_kept.append((queued, metadata.offset))
            else:
                self.on_visible(queued, metadata.offset, False)
        if queued.topic != self.settings.changelog_topic:
            return
        tp = TP(queued.topic, queued.partition)
        last = metadata.offset + queued.count - 1
        if self.app.in_transaction:  # recorded once the transaction commits
            self._delivered_changelog[tp] = max(last, self._delivered_changelog.get(tp, last))
        else:
            store: Any = self.table.data  # a faust Store; typed as a plain mapping
            store.set_persisted_offset(tp, last)

    def _after_commit(self, committed: bool) -> None:
        """Under exactly-once, once their transaction committed: record the changelog offsets
        the local store has, so a restart restores only the changelog after them (step 5), and
        show the kept batches to the thread log (step 6).

        faust means to do this (`persist_offset_on_commit`) but looks its pending offsets up by
        the committed *input* partitions, while they are keyed by changelog partitions: they
        are never written, and every restart re-read the whole changelog (38.9 s for 100,000
        threads, against 1.9 s at-least-once). The gate makes this exact: no batch is sent
        while a commit runs, and a commit waits for every batch sent before it to be delivered,
        so the batches delivered since the last commit are all in the one it just committed.
        A failed commit aborts them: their offsets are dropped, not recorded. The same for the
        kept batches (step 6): shown to the thread log only once committed, dropped otherwise
        (the thread log then reads what is there from the topic).

        The offset recorded is the commit marker's, right after the transaction's last record in
        the partition (its only writer is the input partition's transactional producer; a zombie
        is fenced). faust's restore aims at the offset before the end, which under read_committed
        is that marker: it is never delivered, and recorded as the last record faust waited two
        empty 5-second polls for it on every restart.
        """
        delivered, self._delivered_changelog = self._delivered_changelog, {}
        kept, self._delivered_kept = self._delivered_kept, []
        if not committed:
            return
        if self.on_visible is not None:
            for queued, offset in kept:
                self.on_visible(queued, offset, True)
        store: Any = self.table.data  # a faust Store; typed as a plain mapping
        for tp, last in delivered.items():
            store.set_persisted_offset(tp, last + 1)
