"""The thread table restored from its changelog in batches, before faust's recovery looks.

faust's recovery applies a changelog one event at a time through its stream machinery (a queue,
a timeout task and a few log lines formatted per event): about 7,000 records/s here, 28 s for
the bench's 100,000 threads, while every record of those partitions waits. This reads the same
records with a plain consumer, `getmany` thousands at a time, and writes each partition's
RocksDB in write batches, with faust's own persisted-offset key in the same batch: then faust's
recovery (run right after, `faust_compat.restore_before_recovery`) finds nothing left to read.

- Exactly what faust would write: the key and value of every changelog record, in offset order,
  a tombstone deletes. read_committed, so under exactly-once an aborted state is never restored
  (faust reads its changelog that way too, then).
- The offset written is the last one read, as faust's own; once a partition is read to its end,
  the end minus one (under exactly-once that is the commit marker faust would wait for, as
  `Checkpoint._after_commit` records it).
- Bounded in time (`budget`): faust waits for this within its request timeout, and what is left
  after the budget (each write batch is whole) is left to faust's own loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from rocksdict import WriteBatch

from config.settings import Settings
from processors.kafka.connection import kafka_kwargs, start_client

log = logging.getLogger("orchestral.worker")

_MAX_RECORDS: Final = 10_000


class ChangelogRestore:
    def __init__(
        self, settings: Settings, db_for: Callable[[int], Any], offset_key: bytes, budget: float
    ) -> None:
        """`db_for(partition)`: the table's RocksDB for that partition; `offset_key`: faust's
        key for the persisted offset in it (`faust_compat.persisted_offset_key`)."""
        self.settings = settings
        self.db_for = db_for
        self.offset_key = offset_key
        self.budget = budget

    async def restore(self, partitions: dict[int, int | None]) -> dict[int, int]:
        """Read each changelog partition on from the offset after its persisted one (None: from
        the start). Returns the persisted offset each partition reached."""
        topic = self.settings.changelog_topic
        started = time.monotonic()
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(self.settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 2**20,
            fetch_max_bytes=64 * 2**20,
        )
        await start_client(consumer, self.settings)
        try:
            reached, count = await self._read(consumer, topic, partitions, started)
        finally:
            await consumer.stop()
        log.info(
            "changelog restore: %d records into %d partitions in %.1f s",
            count,
            len(partitions),
            time.monotonic() - started,
        )
        return reached

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        partitions: dict[int, int | None],
        started: float,
    ) -> tuple[dict[int, int], int]:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        left: dict[TopicPartition, int] = {}
        reached: dict[int, int] = {}
        for tp in tps:
            persisted = partitions[tp.partition]
            start = 0 if persisted is None else persisted + 1
            if start < ends[tp]:  # else nothing to read: faust keeps its own offset
                consumer.seek(tp, start)
                left[tp] = ends[tp]
        count = 0
        while left and time.monotonic() - started < self.budget:
            batches = await consumer.getmany(*left, timeout_ms=500, max_records=_MAX_RECORDS)
            for tp, records in batches.items():
                if records:
                    self._write(tp.partition, records)
                    reached[tp.partition] = records[-1].offset
                    count += len(records)
            for tp, end in list(left.items()):
                if await consumer.position(tp) >= end:
                    del left[tp]
                    self._mark_read_to(tp.partition, end - 1)
                    reached[tp.partition] = end - 1
        if left:
            log.warning(
                "changelog restore: %s not read to the end within %.0f s; faust reads on",
                sorted(tp.partition for tp in left),
                self.budget,
            )
        return reached, count

    def _write(self, partition: int, records: list[Any]) -> None:
        batch = WriteBatch(raw_mode=True)
        for record in records:
            if record.key is None:
                continue  # not a table write (faust writes none without a key)
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
        batch.put(self.offset_key, str(records[-1].offset).encode())
        self.db_for(partition).write(batch)

    def _mark_read_to(self, partition: int, offset: int) -> None:
        self.db_for(partition).put(self.offset_key, str(offset).encode())
