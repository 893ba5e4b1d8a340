"""Each thread's store and outcome records, indexed locally, kept up from the topics themselves.

The thread API serves history, interactions and streams from the worker that owns the thread's
partition, without scanning a topic per request. The store topic is the only copy of a thread's
history; this is a materialised view of it (and of the outcomes topic, for streams), in a RocksDB
of the worker's own (`ORCHESTRAL_DATA_DIR/thread-log`), with no changelog of its own:

- the worker's own outputs indexed as they become visible (`show`: at-least-once once
  delivered, under exactly-once once their transaction committed), from the records it produced,
  at the offsets the broker gave them: nothing decoded, nothing fetched again;
- one aiokafka consumer per worker, read_committed (under exactly-once no record of an aborted
  transaction is ever indexed), assigned the store and outcome partitions with the numbers of the
  events partitions the worker owns (outputs go to the input's partition, so a thread's records
  are all there). It reads what `show` cannot: a partition's records up to its end when assigned,
  and any records between two of the worker's own batches (another writer's, a zombie's under
  at-least-once, an aborted transaction). A partition it has read to its end is paused while the
  worker's own batches follow each other without a gap, and read again every few seconds
  (`_RECHECK`) in case another writer appended meanwhile;
- each record indexed once (either path skips what the other did), under its thread: `s` store
  records by offset, `q` the thread's `seq` -> store offset (identical at-least-once copies share
  a seq: history keeps one), `o` outcome and interaction records by offset, `r` interactions
  rolled back (the store's own `turn_rolled_back` marks); and per partition a bookmark, the next
  offset to index, written in the same write batch as the records;
- a partition newly assigned reads on from its bookmark (from the beginning after an empty data
  dir) and is ready once it reached the end it had when assigned;
- it waits while the worker restores its table (`hold`): both share one event loop, and the
  table is what records wait for, where history can answer "restoring" a little longer.

Reads cost what they return (a seek and `limit` steps), whatever the size of the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
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
from processors.worker.output_batch import Kept
from schemas.codec import output_decoder
from schemas.errors import DecodeError

log = logging.getLogger("orchestral.thread_log")

DIRECTORY: Final = "thread-log"
STORE: Final = b"s"
OUTCOMES: Final = b"o"
SEQ: Final = b"q"
ROLLED_BACK: Final = b"r"
BOOKMARK: Final = b"b"
_U64: Final = struct.Struct(">Q")
# Records indexed between two yields to the event loop (see `_follow`).
_INDEX_SLICE: Final = 100
# Seconds between two reads of a paused partition, for records another writer appended.
_RECHECK: Final = 5.0

# (offset, key, value, the output it encodes if known) of a record to index.
_Indexed = tuple[int, bytes | None, bytes | None, dict[str, Any] | None]


def _thread_of(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


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
    def __init__(self, settings: Settings, hold: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self._hold = hold
        path = Path(settings.data_dir) / DIRECTORY
        path.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options=Options(raw_mode=True))
        self.decoder = output_decoder()
        self._topics = {settings.store_topic: STORE, settings.outcomes_topic: OUTCOMES}
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: set[int] = set()
        self._catching_up: dict[TopicPartition, int] = {}  # until this end offset is reached
        self._pending: set[int] = set()  # assigned, their ends not looked at yet
        self._next: dict[TopicPartition, int] = {}  # the next offset to index (the bookmark)
        self._paused: set[TopicPartition] = set()  # read to the end; `show` carries them on
        self._marker: dict[TopicPartition, int] = {}  # where the last shown commit marker sits
        self._recheck_at = 0.0
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
        if self._hold():
            await asyncio.sleep(0.1)
            return
        if self._paused and time.monotonic() >= self._recheck_at:
            for tp in list(self._paused):
                self._resume(tp, self._next[tp])
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, records in batches.items():
            # In slices, giving the loop back between them: the worker's own batches (and
            # their latency) share this event loop with the indexing.
            for start in range(0, len(records), _INDEX_SLICE):
                self._index(tp, records[start : start + _INDEX_SLICE])
                await asyncio.sleep(0)
        await self._note_caught_up(consumer)

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        partitions = set(self._partitions)
        tps = {TopicPartition(t, p) for t in self._topics for p in partitions}
        consumer.assign(sorted(tps))
        self._paused, self._marker = set(), {}
        ends = await consumer.end_offsets(sorted(tps)) if tps else {}
        self._catching_up, self._next = {}, {}
        for tp in tps:
            start = self._bookmark(tp)
            consumer.seek(tp, start)
            self._next[tp] = start
            if start < ends.get(tp, 0):
                self._catching_up[tp] = ends[tp]
        self._pending -= partitions  # an assignment that came meanwhile stays pending
        log.info("thread log follows partitions %s", sorted(self._partitions))

    async def _note_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        for tp, end in list(self._catching_up.items()):
            if await consumer.position(tp) >= end:
                del self._catching_up[tp]
        for tp in consumer.assignment():
            if tp in self._paused or tp in self._catching_up or tp not in self._next:
                continue
            # Everything before the position was handed out and indexed, or is not visible.
            position = await consumer.position(tp)
            self._next[tp] = max(self._next[tp], position)
            end = consumer.last_stable_offset(tp)
            if end is not None and position >= end:  # at the end: `show` carries it on
                consumer.pause(tp)
                self._paused.add(tp)
                self._recheck_at = time.monotonic() + _RECHECK

    def _resume(self, tp: TopicPartition, offset: int) -> None:
        """The consumer reads `tp` again, from `offset`."""
        if tp in self._paused and self._consumer is not None:
            self._paused.discard(tp)
            self._consumer.seek(tp, offset)
            self._consumer.resume(tp)

    def _bookmark(self, tp: TopicPartition) -> int:
        value = self.db.get(self._bookmark_key(tp))
        return _U64.unpack(value)[0] if value is not None else 0

    def _bookmark_key(self, tp: TopicPartition) -> bytes:
        return BOOKMARK + self._topics[tp.topic] + struct.pack(">I", tp.partition)

    def show(
        self, topic: str, partition: int, base: int, kept: Sequence[Kept], transactional: bool
    ) -> None:
        """Records this worker produced, visible from offset `base` on (checkpoint.py, step 6):
        indexed from what they are, if they follow what is indexed without a gap. Otherwise
        what lies between is someone else's, and the consumer reads it all from the topic."""
        tp = TopicPartition(topic, partition)
        start = self._next.get(tp)
        if start is None or partition not in self._partitions or partition in self._pending:
            return  # not followed (yet): the consumer reads them
        if transactional and self._marker.get(tp) == start and base == start + 1:
            start += 1  # the commit marker of the transaction shown before
        if base > start:
            self._resume(tp, start)
            return
        end = base + len(kept)
        fresh = [(base + n, *record) for n, record in enumerate(kept) if base + n >= start]
        self._write(tp, fresh, end)
        if transactional:
            self._marker[tp] = end  # this transaction's commit marker, if it ends here

    def _index(self, tp: TopicPartition, records: list[Any]) -> None:
        """Index a batch of one partition the consumer read (what `show` did not)."""
        if not records:
            return
        start = self._next.get(tp, 0)
        fresh = [(m.offset, m.key, m.value, None) for m in records if m.offset >= start]
        self._write(tp, fresh, records[-1].offset + 1)

    def _write(self, tp: TopicPartition, records: Iterable[_Indexed], end: int) -> None:
        """Index records of one partition, in offset order, and its bookmark `end`. The key is
        the thread id (every output is keyed by its thread); a record read from the topic is
        decoded only if it is a store record or a stream listens to its thread."""
        kind = self._topics[tp.topic]
        batch = WriteBatch(raw_mode=True)
        entries: list[tuple[str, Entry]] = []
        for offset, key, value, output in records:
            thread_id = _thread_of(key)
            if thread_id is None or value is None:
                continue  # not ours: nothing to index
            record = output
            if kind == STORE and record is None:
                record = self._decoded(value, thread_id)
                if record is None:
                    continue
            packed = _U64.pack(offset)
            batch.put(_thread_key(kind, thread_id) + packed, value)
            if record is not None and kind == STORE:
                self._index_store(batch, thread_id, record, packed)
            if thread_id in self._listeners:  # as a stream reading the topic gets it
                shown = self._decoded(value, thread_id)
                if shown is not None:
                    entries.append((thread_id, Entry(_label(kind, shown), offset, shown)))
        end = max(end, self._next.get(tp, 0))
        self._next[tp] = end
        batch.put(self._bookmark_key(tp), _U64.pack(end))
        self.db.write(batch)
        for thread_id, entry in entries:
            for queue in self._listeners.get(thread_id, ()):
                queue.put_nowait(entry)

    def _decoded(self, value: bytes | None, thread_id: str) -> dict[str, Any] | None:
        try:
            record = self.decoder.decode_value(value)
        except DecodeError:
            return None
        if not isinstance(record, dict) or record.get("thread_id") != thread_id:
            return None
        return record

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
                try:  # indexed undecoded (see `_index`): a value not ours is left out here
                    record = self.decoder.decode_value(it.value())
                except DecodeError:
                    record = None
                if isinstance(record, dict):
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
