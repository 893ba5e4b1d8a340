"""A small async client for services that embed orchestral-stream (and for the CLI).

    async with Client(settings) as client:
        await client.send({"type": "user_input", "thread_id": "t1", "payload": {"message": "hi"}})
        delivery = await client.send_and_wait(record, timeout=30)   # delivery.outcome
        async for topic, record in client.subscribe(thread_id="t1"):
            ...
        events = await client.history("t1", limit=20)

A record is checked before it is produced, by the worker's own decoder and rules: one the worker
would dead-letter or answer `invalid` raises RecordRefused with the worker's reason, as does one
over ORCHESTRAL_MAX_INPUT_BYTES. Every read uses `isolation_level="read_committed"`: under
exactly-once, records of aborted transactions are never seen.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from config.settings import Settings
from processors.client.history import query_history
from processors.core import ThreadState
from processors.core.runtime import NULL_PAYLOAD_REASON
from processors.kafka.connection import kafka_kwargs, start_client
from schemas.codec import InputDecoder, make_codec, output_decoder
from schemas.errors import DecodeError, OrchestralError
from schemas.json_codec import JsonCodec
from schemas.records import Command, Event
from schemas.timestamps import format_fraction

# Room for the key, headers and batch framing above ORCHESTRAL_MAX_INPUT_BYTES, so that our own
# check, not the producer's, is the one that refuses a record.
_PRODUCER_OVERHEAD = 64 * 1024
# How long a topic that does not exist yet is looked for again (see `_partition_numbers`).
_NEW_TOPIC_WAIT = 3.0


class RecordRefused(OrchestralError):
    """A record was not produced: the worker would refuse it (its reason), or it is too large."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RecordTooLarge(RecordRefused):
    """A record refused for its encoded size alone (the HTTP API answers it 413, not 400)."""


class OutcomeTimeout(OrchestralError):
    """`send_and_wait`: the record was produced, but no outcome came back in time."""

    def __init__(self, message: str, delivery: Delivery) -> None:
        self.delivery = delivery
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record as it will be produced: defaults filled in, checked, encoded."""

    record: dict[str, Any]
    thread_id: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    record: dict[str, Any]
    partition: int
    offset: int
    outcome: dict[str, Any] | None = None


def now_rfc3339() -> str:
    """Wall-clock time for records this client creates (the core never reads the clock)."""
    now = datetime.now(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}{format_fraction(now.microsecond * 1000)}Z"


def check_input(value: Any, decoder: InputDecoder | None = None) -> Event | Command:
    """The record as the worker would read it, or RecordRefused with the worker's reason.

    It goes through the bytes the worker would get (JSON), so values JSON cannot carry (NaN, a
    set) and everything the worker's decoder refuses are caught too. The client produces with
    the parsed `thread_id` as the key, so the worker's key == thread_id rule holds by
    construction.
    """
    try:
        record = (decoder or InputDecoder()).decode(_json_bytes(value))
    except DecodeError as exc:
        raise RecordRefused(exc.reason) from None
    if record.type in ("user_input", "external_event") and record.payload is None:
        raise RecordRefused(NULL_PAYLOAD_REASON)  # the core answers such a record `invalid`
    return record


def _json_bytes(value: Any) -> bytes:
    try:
        return JsonCodec().encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RecordRefused(f"value is not valid JSON: {exc}") from None


def dead_letter_view(message: Any) -> dict[str, Any]:
    """One DLQ record as text: where it sits, its headers (why), its key and value."""
    view: dict[str, Any] = {"partition": message.partition, "offset": message.offset}
    view["headers"] = {name: _text(data) for name, data in message.headers or ()}
    view.update(_bytes_field("key", message.key))
    view.update(_bytes_field("value", message.value))
    return view


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _bytes_field(name: str, data: bytes | None) -> dict[str, Any]:
    """UTF-8 as text; anything else (Avro, garbage) as base64 under `{name}_base64`."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


class Client:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = make_codec(settings.codec)
        self.decoder = output_decoder()
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._admin is not None:
            await self._admin.close()

    # --- producing --------------------------------------------------------------------------

    def prepare(self, record: Any, *, new_event_id: bool = True) -> Prepared:
        """Fill `timestamp` and `event_id`, check and encode; RecordRefused says why not. No I/O.

        `new_event_id=False` leaves a record without one to the worker's derived id (heartbeats:
        they stay out of the thread's dedupe window).
        """
        value = dict(record) if isinstance(record, Mapping) else record
        if isinstance(value, dict):
            value.setdefault("timestamp", now_rfc3339())
            if new_event_id:
                value.setdefault("event_id", str(uuid.uuid4()))
        parsed = check_input(value, self.decoder)
        try:
            data = self.codec.encode(value)
        except (TypeError, ValueError) as exc:
            raise RecordRefused(f"cannot encode as {self.codec.name}: {exc}") from None
        limit = self.settings.max_input_bytes
        if len(data) > limit:
            raise RecordTooLarge(
                f"record is {len(data)} bytes encoded, over ORCHESTRAL_MAX_INPUT_BYTES={limit} "
                "(to raise it, raise the events topic's max.message.bytes too)"
            )
        return Prepared(value, parsed.thread_id, parsed.thread_id.encode(), data)

    async def send(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Produce one input record keyed by its thread; fills `timestamp` and `event_id`."""
        prepared = self.prepare(record)
        await self._produce(prepared)
        return prepared.record

    async def produce(self, record: Mapping[str, Any], *, new_event_id: bool = True) -> Delivery:
        """`send`, answering where the record went (its partition and offset)."""
        return await self._produce(self.prepare(record, new_event_id=new_event_id))

    async def send_and_wait(self, record: Mapping[str, Any], timeout: float) -> Delivery:
        """Produce one record and wait up to `timeout` s for its outcome (OutcomeTimeout if none).

        The outcome reader is positioned on the thread's outcome partition (the input's
        partition number: the worker writes outputs beside their input) before the record is
        produced, so an outcome cannot land before the offset it reads from, however fast the
        worker is.
        """
        prepared = self.prepare(record)
        consumer = self._consumer()
        await start_client(consumer, self.settings)
        try:
            partition = await self._input_partition(consumer, prepared.thread_id)
            tp = TopicPartition(self.settings.outcomes_topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, (await consumer.end_offsets([tp]))[tp])
            delivery = await self._produce(prepared, partition)
            event_id = str(prepared.record["event_id"])
            try:
                outcome = await asyncio.wait_for(
                    self._outcome_of(consumer, tp, prepared.key, event_id), timeout
                )
            except TimeoutError:
                raise OutcomeTimeout(
                    f"no outcome for event {event_id} within {timeout:g} s: is a worker running "
                    f"for {self.settings.events_topic} at {self.settings.bootstrap_servers}?",
                    delivery,
                ) from None
            return Delivery(delivery.record, delivery.partition, delivery.offset, outcome)
        finally:
            await consumer.stop()

    async def _input_partition(self, consumer: AIOKafkaConsumer, thread_id: str) -> int:
        tps = await self._partitions(consumer, self.settings.events_topic, thread_id)
        if not tps:
            raise OrchestralError(
                f"topic {self.settings.events_topic} does not exist at "
                f"{self.settings.bootstrap_servers}: a worker creates it when it starts"
            )
        return int(tps[0].partition)

    async def _outcome_of(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, key: bytes, event_id: str
    ) -> dict[str, Any]:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for message in batch.get(tp, []):
                if message.key != key:
                    continue
                try:
                    value = self.decoder.decode_value(message.value)
                except DecodeError:
                    continue  # not ours to judge: the worker writes only valid records
                if value.get("type") == "outcome" and value.get("source_event_id") == event_id:
                    return dict(value)

    async def _produce(self, prepared: Prepared, partition: int | None = None) -> Delivery:
        producer = await self._ensure_producer()
        metadata = await producer.send_and_wait(
            self.settings.events_topic, key=prepared.key, value=prepared.value, partition=partition
        )
        return Delivery(prepared.record, metadata.partition, metadata.offset)

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **kafka_kwargs(self.settings),
                acks="all",
                max_request_size=self.settings.max_input_bytes + _PRODUCER_OVERHEAD,
            )
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

    async def dead_letters(
        self, limit: int = 0, *, follow: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The DLQ's records (`dead_letter_view`): the newest `limit` (0: all), oldest first,
        then, with `follow`, each new one as it is written."""
        consumer = self._consumer()
        await start_client(consumer, self.settings)
        try:
            tps = await self._partitions(consumer, self.settings.dlq_topic, None)
            if not tps:
                raise OrchestralError(
                    f"topic {self.settings.dlq_topic} does not exist at "
                    f"{self.settings.bootstrap_servers}: a worker creates it when it starts"
                )
            consumer.assign(tps)
            for view in await self._newest(consumer, tps, limit):
                yield view
            while follow:
                batch = await consumer.getmany(*tps, timeout_ms=1000)
                for message in sorted((m for ms in batch.values() for m in ms), key=_when):
                    yield dead_letter_view(message)
        finally:
            await consumer.stop()

    @staticmethod
    async def _newest(
        consumer: AIOKafkaConsumer, tps: list[TopicPartition], limit: int
    ) -> list[dict[str, Any]]:
        """Up to the current end of `tps`: the newest `limit` records (0: all), oldest first."""
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            # Under exactly-once a record may be followed by its transaction's commit marker:
            # 2 x limit offsets hold at least `limit` records.
            consumer.seek(tp, max(starts[tp], ends[tp] - 2 * limit) if limit else starts[tp])
        messages: list[Any] = []
        pending = [tp for tp in tps if starts[tp] < ends[tp]]
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            messages.extend(m for got in batch.values() for m in got)
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
        messages.sort(key=_when)
        return [dead_letter_view(m) for m in (messages[-limit:] if limit else messages)]

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

    def reader(self) -> AIOKafkaConsumer:
        """A read_committed consumer in no group: where it reads is the caller's choice."""
        return self._consumer()

    async def thread_partitions(
        self, consumer: AIOKafkaConsumer, topic: str, thread_id: str | None
    ) -> list[TopicPartition]:
        """The partition of `topic` that `thread_id` hashes to (every one for None)."""
        return await self._partitions(consumer, topic, thread_id)

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **kafka_kwargs(self.settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def _partitions(
        self, consumer: AIOKafkaConsumer, topic: str, thread_id: str | None
    ) -> list[TopicPartition]:
        """All partitions of `topic`, or only the one `thread_id` hashes to."""
        # A consumer's cached metadata only knows subscribed topics: ask the cluster.
        if self._admin is None:
            admin = AIOKafkaAdminClient(**kafka_kwargs(self.settings))
            await start_client(admin, self.settings)
            self._admin = admin
        partitions = await self._partition_numbers(self._admin, topic)
        if not partitions:
            return []
        if thread_id is None:
            return [TopicPartition(topic, p) for p in partitions]
        index = (murmur2(thread_id.encode()) & 0x7FFFFFFF) % len(partitions)
        return [TopicPartition(topic, partitions[index])]

    @staticmethod
    async def _partition_numbers(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
        """The topic's partitions; [] when it does not exist, after a short wait: a topic just
        created (a worker starting) takes a moment to reach every broker's metadata."""
        deadline = time.monotonic() + _NEW_TOPIC_WAIT
        while True:
            [described] = await admin.describe_topics([topic])
            found = sorted(p["partition"] for p in described.get("partitions") or ())
            if (found and not described.get("error_code")) or time.monotonic() > deadline:
                return found if not described.get("error_code") else []
            await asyncio.sleep(0.2)


def _when(message: Any) -> tuple[int, int, int]:
    return (message.timestamp, message.partition, message.offset)
