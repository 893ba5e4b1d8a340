"""The records a batch of inputs produces, queued in aiokafka one batch per topic-partition.

aiokafka's `send` costs tens of microseconds of Python per record (metadata wait, serializer,
partitioner, a future per record); the worker sends about four records per input, which cost more
than the thread runtime that computed them. `create_batch` / `send_batch` appends the records into
a record-batch builder (C code in aiokafka) and queues each builder whole: same producer, same
acks, same linger, and, in a transactional producer, the same open transaction (aiokafka adds the
partition to it when the batch is queued).

Order is kept where Kafka has one: the records of a topic-partition are queued in the order they
were added.

For the topics in `keep` (the store and outcomes), each queued batch also carries its records
(key, value, the output they encode): once delivered, their offsets are known, and the thread log
indexes them from there instead of reading them back from the topic (thread_log.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

# The producer to queue a partition's records in, and the lock its sends take (faust guards a
# transactional producer with one; a plain producer needs none).
Target = tuple[Any, AbstractAsyncContextManager[Any]]

Headers = list[tuple[str, bytes]]
# A record kept for the thread log: key, value, the output it encodes.
Kept = tuple[bytes | None, bytes | None, dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Queued:
    """A batch handed to the producer: `future` resolves with the offset of its first record."""

    topic: str
    partition: int
    count: int
    future: asyncio.Future[Any]
    kept: tuple[Kept, ...] = ()  # its records, in order, for a topic in `keep`


class OutputBatch:
    def __init__(
        self, target_for: Callable[[int], Target], keep: frozenset[str] = frozenset()
    ) -> None:
        self._target_for = target_for
        self._keep = keep
        # (topic, partition, input partition) -> its builders, filled in order; only the last
        # one takes more. For a topic in `keep`, the records of each builder beside it.
        self._builders: dict[tuple[str, int, int], list[Any]] = {}
        self._kept: dict[tuple[str, int, int], list[list[Kept]]] = {}

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        via: int | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        """Queue a record for `topic`[`partition`], in the producer of input partition `via`
        (default: the same partition; a record forwarded to another partition of the events
        topic must commit with the input partition it was read from). `record`: the output
        `value` encodes, kept with it for a topic in `keep`."""
        slot = (topic, partition, partition if via is None else via)
        builders = self._builders.get(slot)
        kept = self._kept.get(slot)
        if builders is None:
            builders = self._builders[slot] = [self._new_builder(slot[2])]
            if topic in self._keep:
                kept = self._kept[slot] = [[]]
        if not builders[-1].append(timestamp=None, key=key, value=value, headers=headers or []):
            # Full (at the producer's batch size): a new builder takes the record; an empty
            # builder takes one of any size, the broker's max.message.bytes is the only limit.
            builders.append(self._new_builder(slot[2]))
            builders[-1].append(timestamp=None, key=key, value=value, headers=headers or [])
            if kept is not None:
                kept.append([])
        if kept is not None:
            kept[-1].append((key, value, record))

    def _new_builder(self, via: int) -> Any:
        producer, _ = self._target_for(via)
        return producer.create_batch()

    async def send(self) -> list[Queued]:
        """Queue every builder in its producer (waiting for buffer room, not for delivery)."""
        queued: list[Queued] = []
        for slot, builders in self._builders.items():
            topic, partition, via = slot
            producer, lock = self._target_for(via)
            kept = self._kept.get(slot)
            for n, builder in enumerate(builders):
                # Closed: the producer sends it without lingering (nothing more can join it),
                # and the next batch for this partition waits only for that send.
                builder.close()
                async with lock:
                    future = await producer.send_batch(builder, topic, partition=partition)
                records = tuple(kept[n]) if kept is not None else ()
                queued.append(Queued(topic, partition, builder.record_count(), future, records))
        self._builders.clear()
        self._kept.clear()
        return queued
