"""faust's Kafka consumer, with three defects fixed that lose or duplicate records or state.

1. A seek that lands in the middle of a fetched batch.

faust's fetch loop (`Consumer._drain_messages`) hands each record of a fetched batch to the
streams, then notes it as the partition's read offset. It compares every record with that read
offset: a record past it opens a *gap*, counted as done at the next commit (that is how faust
skips transaction markers), and a record before it is dropped as already seen.

At the end of a rebalance faust seeks every partition back to its committed offset
(`perform_seek`) while the fetch loop may still be in the middle of a batch fetched before the
seek. Measured on this project (tests/integration/test_recovery.py): committed offset 109, the
fetcher had handed out 109..213, the seek set the read offset back to 109, the loop went on with
134..213 from its old batch, opened a gap 110..133 and dropped the re-fetched 109..213 as already
seen. Records 121..133, cleared from the stream's queue when the flow resumed, were never handled
but were committed with the gap: lost, under both processing guarantees.

`SafeConsumer` notices a seek made while the loop works through a batch, drops the rest of
that batch and seeks to the committed offsets again, which also puts the read offsets back: the
next fetch starts from the committed offset, and records handled meanwhile are read again (the
worker recognises them, processing.py).

2. Changelog highwaters under exactly-once.

To decide what to restore, faust asks for the changelog partitions' highwaters; under
exactly-once it answers with aiokafka's `last_stable_offset`, which aiokafka only knows from a
fetch response. For a partition just assigned (a worker taking over a dead one's partitions) it is
unknown, faust takes it as "empty", skips the restore, and the threads of that partition start
from no state (measured: a surviving worker answered 23 records of the dead one's threads as if
they were new). `SafeConsumer` asks the broker instead: ListOffsets under the consumer's
isolation level, which is the last stable offset under read_committed.

3. Handled records forgotten at a rebalance, under exactly-once.

When a rebalance starts, faust drops its list of handled ("acked") offsets for every partition,
but keeps the open transactions of the partitions it gets back: the outputs of records handled
just before went on to commit with the next transaction while their offsets did not, the records
were read again and their outputs re-emitted (measured: 901 duplicates under read_committed when a
second worker died). `SafeConsumer` stops the flow and commits the transactions, offsets
included, before faust forgets them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message

from processors.worker import faust_compat

if TYPE_CHECKING:
    from processors.worker.checkpoint import Checkpoint

log = logging.getLogger("orchestral.worker")


class SafeConsumer(Consumer):
    """faust's aiokafka consumer, without the three defects above; its commits go through the
    worker's commit protocol once the agent has set `checkpoint` (checkpoint.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeks = 0  # seeks so far: a batch that sees this change is stale
        self.checkpoint: Checkpoint | None = None

    async def force_commit(self, *args: Any, **kwargs: Any) -> Any:
        """faust's periodic and rebalance commits all come here (it is not on ConsumerT)."""
        commit = super().force_commit
        if self.checkpoint is None:
            return await commit(*args, **kwargs)
        return await self.checkpoint.commit(lambda: commit(*args, **kwargs))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if self.app.in_transaction:
            await self._commit_before_revoke()
        await super().on_partitions_revoked(revoked)

    async def _commit_before_revoke(self) -> None:
        # No record may be handled after this commit: its offset would be dropped.
        self.stop_flow()
        self.app.flow_control.suspend()
        try:
            # False: a commit was already running, and this one only waited for it.
            if not await self.commit():
                await self.commit()
        except Exception as exc:  # the transactions abort; their records are read again
            log.warning("commit before a rebalance failed: %r", exc)

    async def perform_seek(self) -> None:
        """Seek every assigned partition to its committed offset (faust, end of rebalance)."""
        self._seeks += 1
        await super().perform_seek()

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks += 1
        await super().seek(partition, offset)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """Each partition's end offset from the broker (the last stable offset under
        read_committed), never "unknown" as faust's exactly-once answer can be."""
        ends: Mapping[TP, int] = await faust_compat.broker_end_offsets(self, list(partitions))
        return ends

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust's batch, ended at the first record after a seek made while it was fetched or
        handed out. The loop notes a record's read offset after handing it to the streams
        (which awaits), so the check also runs once the batch is done."""
        seeks = self._seeks
        async for tp, message in super().getmany(timeout):
            if self._seeks != seeks:
                break
            yield tp, message
        if self._seeks != seeks:
            await self._seek_to_committed_again()

    async def _seek_to_committed_again(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:  # no assignment (a rebalance): faust seeks when it ends
            log.warning("seek after a stale batch failed: %r", exc)
