"""Each thread's store and outcome records, indexed locally, kept up from the topics themselves.

The thread API serves history, interactions and streams from the worker that owns the thread's
partition, without scanning a topic per request. The store topic is the only copy of a thread's
history; this is a materialised view of it (and of the outcomes topic, for streams), in a RocksDB
of the worker's own (`ORCHESTRAL_DATA_DIR/thread-log`), with no changelog of its own:

- one aiokafka consumer per worker, read_committed (under exactly-once no record of an aborted
  transaction is ever indexed), assigned the store and outcome partitions with the numbers of the
  events partitions the worker owns; outputs go to the input's partition, so a thread's records
  are all there;
- each record indexed under its thread: `s` store records by offset, `q` the thread's `seq` ->
  store offset (identical at-least-once copies share a seq: history keeps one), `o` outcome and
  interaction records by offset, `r` interactions rolled back (the store's own
  `turn_rolled_back` marks); and per partition a bookmark, the next offset to index, written in
  the same write batch as the records;
- a partition newly assigned reads on from its bookmark (from the beginning after an empty data
  dir) and is ready once it reached the end it had when assigned.

Reads cost what they return (a seek and `limit` steps), whatever the size of the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from config.settings import Settings
from processors.api.backend import StreamEvent
from processors.core.outputs import LIFECYCLE_CATEGORY, TURN_ROLLED_BACK
from processors.kafka.connection import kafka_kwargs, start_client
from schemas.codec import InputDecoder
from schemas.errors import DecodeError

log = logging.getLogger("orchestral.thread_log")

DIRECTORY: Final = "thread-log"
STORE: Final = b"s"
OUTCOMES: Final = b"o"
SEQ: Final = b"q"
ROLLED_BACK: Final = b"r"
BOOKMARK: Final = b"b"
_U64: Final = struct.Struct(">Q")


def _thread_key(kind: bytes, thread_id: str) -> bytes:
    """`kind`, then the thread id length-prefixed: no thread's keys are a prefix of another's."""
    raw = thread_id.encode()
    return kind + struct.pack(">I", len(raw)) + raw


@dataclass(frozen=True, slots=True)
class Position:
    """What a stream has delivered of a thread: the last store and outcome offsets (-1: none).
    Written as a stream message's `id:`, so a client resumes on any worker with Last-Event-ID."""

    store: int = -1
    outcomes: int = -1

    def __str__(self) -> str:
        return f"{self.store}.{self.outcomes}"

    @classmethod
    def parse(cls, text: str) -> Position:
        store, _, outcomes = text.partition(".")
        return cls(int(store), int(outcomes))


@dataclass(frozen=True, slots=True)
class Entry:
    kind: StreamEvent
    offset: int
    record: dict[str, Any]


class ThreadLog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        path = Path(settings.data_dir) / DIRECTORY
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=Options(raw_mode=True))
        self.decoder = InputDecoder()
        self._topics = {settings.store_topic: STORE, settings.outcomes_topic: OUTCOMES}
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: set[int] = set()
        self._catching_up: dict[TopicPartition, int] = {}  # until this end offset is reached
        self._pending: set[int] = set()  # assigned, their ends not looked at yet
        self._changed = asyncio.Event()
        self._listeners: dict[str, set[asyncio.Queue[Entry]]] = {}
        self._task: asyncio.Task[None] | None = None

    # --- the tail --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, then follow in the background. Never raises (a faust task that does crashes
        the app): while the cluster is away, it tries again, and its partitions stay not ready."""
        while self._consumer is None:
            consumer = AIOKafkaConsumer(
                **kafka_kwargs(self.settings),
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                await start_client(consumer, self.settings)
            except Exception as exc:  # start_client closed it
                log.warning("thread log cannot reach the cluster yet: %r", exc)
                await asyncio.sleep(1.0)
                continue
            self._consumer = consumer
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        self.db.close()

    def assign(self, partitions: set[int]) -> None:
        """Follow these partitions (the worker's events partitions) from now on. Not ready
        until the tail has looked at where they end (`_reassign`)."""
        self._partitions = set(partitions)
        self._pending = set(partitions)
        self._changed.set()

    def ready(self, partition: int) -> bool:
        return (
            partition in self._partitions
            and partition not in self._pending
            and not any(tp.partition == partition for tp in self._catching_up)
        )

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            try:
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cluster went away: follow again from the bookmarks
                log.warning("thread log interrupted, follows again: %r", exc)
                self._changed.set()
                await asyncio.sleep(1.0)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        if self._changed.is_set():
            self._changed.clear()
            await self._reassign(consumer)
        if not consumer.assignment():
            await self._changed.wait()
            return
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, records in batches.items():
            self._index(tp, records)
        await self._note_caught_up(consumer)

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        partitions = set(self._partitions)
        tps = {TopicPartition(t, p) for t in self._topics for p in partitions}
        consumer.assign(sorted(tps))
        ends = await consumer.end_offsets(sorted(tps)) if tps else {}
        self._catching_up = {}
        for tp in tps:
            start = self._bookmark(tp)
            consumer.seek(tp, start)
            if start < ends.get(tp, 0):
                self._catching_up[tp] = ends[tp]
        self._pending -= partitions  # an assignment that came meanwhile stays pending
        log.info("thread log follows partitions %s", sorted(self._partitions))

    async def _note_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp, end in list(self._catching_up.items()):
            if await consumer.position(tp) >= end:
                del self._catching_up[tp]

    def _bookmark(self, tp: TopicPartition) -> int:
        value = self.db.get(self._bookmark_key(tp))
        return _U64.unpack(value)[0] if value is not None else 0

    def _bookmark_key(self, tp: TopicPartition) -> bytes:
        return BOOKMARK + self._topics[tp.topic] + struct.pack(">I", tp.partition)

    def _index(self, tp: TopicPartition, records: list[Any]) -> None:
        kind = self._topics[tp.topic]
        batch = WriteBatch(raw_mode=True)
        entries: list[tuple[str, Entry]] = []
        for message in records:
            try:
                record = self.decoder.decode_value(message.value)
            except DecodeError:  # not ours: nothing to index
                continue
            thread_id = record.get("thread_id")
            if not isinstance(thread_id, str):
                continue
            offset = _U64.pack(message.offset)
            batch.put(_thread_key(kind, thread_id) + offset, message.value)
            if kind == STORE:
                self._index_store(batch, thread_id, record, offset)
            entries.append((thread_id, Entry(_label(kind, record), message.offset, record)))
        if records:
            batch.put(self._bookmark_key(tp), _U64.pack(records[-1].offset + 1))
            self.db.write(batch)
        for thread_id, entry in entries:
            for queue in self._listeners.get(thread_id, ()):
                queue.put_nowait(entry)

    def _index_store(
        self, batch: WriteBatch, thread_id: str, record: dict[str, Any], offset: bytes
    ) -> None:
        seq = record.get("seq")
        if isinstance(seq, int):
            key = _thread_key(SEQ, thread_id) + _U64.pack(seq)
            if self.db.get(key) is None:  # an identical copy keeps the first
                batch.put(key, offset)
        payload = record.get("payload")
        if (
            record.get("type") == "system_trace"
            and record.get("interaction_id") is None
            and isinstance(payload, dict)
            and payload.get("category") == LIFECYCLE_CATEGORY
            and payload.get("event_type") == TURN_ROLLED_BACK
            and isinstance(payload.get("interaction_id"), str)
        ):
            batch.put(_thread_key(ROLLED_BACK, thread_id) + payload["interaction_id"].encode(), b"")

    # --- reads -----------------------------------------------------------------------------

    def history(
        self, thread_id: str, *, limit: int, before_seq: int | None, include_rolled_back: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        """The thread's stored events, newest first, and the `before_seq` of the next page."""
        rolled_back = set() if include_rolled_back else self._rolled_back(thread_id)
        prefix = _thread_key(SEQ, thread_id)
        store = _thread_key(STORE, thread_id)
        events: list[dict[str, Any]] = []
        next_before: int | None = None
        for key, offset in self._backwards(prefix, before_seq):
            seq = _U64.unpack(key[len(prefix) :])[0]
            if len(events) == limit:
                next_before = seq + 1
                break
            value = self.db.get(store + offset)
            if value is None:
                continue
            event = self.decoder.decode_value(value)
            if event.get("interaction_id") in rolled_back:
                continue
            events.append(event)
        return events, next_before

    def _backwards(self, prefix: bytes, before: int | None) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        if before is None:
            it.seek_for_prev(prefix + b"\xff" * 8)
        elif before <= 0:
            return
        else:
            it.seek_for_prev(prefix + _U64.pack(before - 1))
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                return
            yield key, it.value()
            it.prev()

    def _rolled_back(self, thread_id: str) -> set[str]:
        prefix = _thread_key(ROLLED_BACK, thread_id)
        it = self.db.iter()
        it.seek(prefix)
        found = set()
        while it.valid() and it.key().startswith(prefix):
            found.add(it.key()[len(prefix) :].decode())
            it.next()
        return found

    def latest(self, thread_id: str) -> Position:
        """What a stream that starts now has, in effect, delivered already."""
        return Position(self._last(STORE, thread_id), self._last(OUTCOMES, thread_id))

    def _last(self, kind: bytes, thread_id: str) -> int:
        prefix = _thread_key(kind, thread_id)
        for key, _ in self._backwards_raw(prefix):
            return int(_U64.unpack(key[len(prefix) :])[0])
        return -1

    def _backwards_raw(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        it.seek_for_prev(prefix + b"\xff" * 8)
        if it.valid() and it.key().startswith(prefix):
            yield it.key(), it.value()

    def after(self, thread_id: str, position: Position) -> list[Entry]:
        """The thread's records after `position`: store records, then outcome records."""
        entries = []
        for kind, last in ((STORE, position.store), (OUTCOMES, position.outcomes)):
            prefix = _thread_key(kind, thread_id)
            it = self.db.iter()
            it.seek(prefix + _U64.pack(last + 1))
            while it.valid() and it.key().startswith(prefix):
                offset = _U64.unpack(it.key()[len(prefix) :])[0]
                record = self.decoder.decode_value(it.value())
                entries.append(Entry(_label(kind, record), int(offset), record))
                it.next()
        return entries

    # --- streams ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def listen(self, thread_id: str) -> Iterator[asyncio.Queue[Entry]]:
        """The thread's records as they are indexed, while the block runs."""
        queue: asyncio.Queue[Entry] = asyncio.Queue()
        self._listeners.setdefault(thread_id, set()).add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(thread_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[thread_id]

    async def stream(
        self, thread_id: str, after: Position
    ) -> AsyncIterator[tuple[Position, Entry]]:
        """The thread's records after `after`, then live; each with the position after it."""
        delivered = after
        with self.listen(thread_id) as live:
            for entry in self.after(thread_id, after):
                delivered = _advance(delivered, entry)
                yield delivered, entry
            while True:
                entry = await live.get()
                if _seen(delivered, entry):
                    continue
                delivered = _advance(delivered, entry)
                yield delivered, entry


def _label(kind: bytes, record: dict[str, Any]) -> StreamEvent:
    """A stream message's `event:` name."""
    if kind == STORE:
        return "store"
    return "interaction" if record.get("type") == "interaction" else "outcome"


def _seen(position: Position, entry: Entry) -> bool:
    last = position.store if entry.kind == "store" else position.outcomes
    return entry.offset <= last


def _advance(position: Position, entry: Entry) -> Position:
    if entry.kind == "store":
        return Position(max(position.store, entry.offset), position.outcomes)
    return Position(position.store, max(position.outcomes, entry.offset))
