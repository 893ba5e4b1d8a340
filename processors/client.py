"""A small async client for services that embed orchestral-stream (and for the CLI).

    async with Client(settings) as client:
        await client.send({"type": "user_input", "thread_id": "t1", "payload": {"message": "hi"}})
        async for topic, record in client.subscribe(thread_id="t1"):
            ...
        events = await client.history("t1", limit=20)

Every read uses `isolation_level="read_committed"`: under exactly-once, records of aborted
transactions are never seen.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from config.settings import Settings
from processors.connection import kafka_kwargs, start_client
from processors.core import ThreadState
from processors.history import query_history
from schemas.codec import InputDecoder, make_codec
from schemas.timestamps import format_fraction


def now_rfc3339() -> str:
    """Wall-clock time for records this client creates (the core never reads the clock)."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}{format_fraction(now.microsecond * 1000)}Z"


class Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = make_codec(settings.codec)
        self.decoder = InputDecoder()
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    # --- producing --------------------------------------------------------------------------

    async def send(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Produce one input record keyed by its thread; fills `timestamp` and `event_id`."""
        value = {**record}
        value.setdefault("timestamp", now_rfc3339())
        value.setdefault("event_id", str(uuid.uuid4()))
        producer = await self._ensure_producer()
        await producer.send_and_wait(
            self.settings.events_topic,
            key=str(value["thread_id"]).encode(),
            value=self.codec.encode(value),
        )
        return value

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**kafka_kwargs(self.settings), acks="all")
            await start_client(producer, self.settings)
            self._producer = producer
        return self._producer

    # --- reading ----------------------------------------------------------------------------

    async def subscribe(
        self, thread_id: str | None = None, *, from_beginning: bool = False
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Follow the store and outcome topics: ("store" | "outcomes", record), forever."""
        names = {self.settings.store_topic: "store", self.settings.outcomes_topic: "outcomes"}
        consumer = self._consumer()
        await start_client(consumer, self.settings)
        try:
            tps = [tp for name in names for tp in await self._partitions(consumer, name, thread_id)]
            consumer.assign(tps)
            await (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*tps)
            async for message in consumer:
                if thread_id is not None and message.key != thread_id.encode():
                    continue
                yield names[message.topic], self.decoder.decode_value(message.value)
        finally:
            await consumer.stop()

    async def history(self, thread_id: str, limit: int = 0) -> list[dict[str, Any]]:
        """The thread's stored events with the seed's `query_history` semantics.

        The store alone: rolled-back turns are known by its own `turn_rolled_back` marks.
        """
        events = await self._read_partition(self.settings.store_topic, thread_id)
        return query_history(events, limit)

    async def thread_state(self, thread_id: str) -> ThreadState | None:
        """The thread's latest state, read from the worker's table changelog."""
        raw = await self._read_partition(self.settings.changelog_topic, thread_id, decode=False)
        return ThreadState.from_bytes(raw[-1]) if raw and raw[-1] is not None else None

    async def _read_partition(
        self, topic: str, thread_id: str, *, decode: bool = True
    ) -> list[Any]:
        """Every value of `thread_id` in its partition of `topic`, oldest first."""
        key = thread_id.encode()
        consumer = self._consumer()
        await start_client(consumer, self.settings)
        try:
            tps = await self._partitions(consumer, topic, thread_id)
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = (await consumer.end_offsets(tps))[tps[0]]
            values: list[Any] = []
            while await consumer.position(tps[0]) < end:
                batch = await consumer.getmany(*tps, timeout_ms=1000)
                for message in batch.get(tps[0], []):
                    if message.key == key:
                        values.append(
                            self.decoder.decode_value(message.value) if decode else message.value
                        )
            return values
        finally:
            await consumer.stop()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **kafka_kwargs(self.settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    @staticmethod
    async def _partitions(
        consumer: AIOKafkaConsumer, topic: str, thread_id: str | None
    ) -> list[TopicPartition]:
        """All partitions of `topic`, or only the one `thread_id` hashes to."""
        # A consumer's cached metadata only knows subscribed topics: ask the cluster.
        metadata = await consumer._client.fetch_all_metadata()
        partitions = sorted(metadata.partitions_for_topic(topic) or ())
        if not partitions:
            return []
        if thread_id is None:
            return [TopicPartition(topic, p) for p in partitions]
        index = (murmur2(thread_id.encode()) & 0x7FFFFFFF) % len(partitions)
        return [TopicPartition(topic, partitions[index])]
