"""One Kafka record in, the records to produce and the state to save out. No I/O, no faust.

The worker's batch loop (processing.py) calls `RecordHandler.handle_safely`; this module is the
part of the shell that can be tested without a broker:

1. decode the value (either codec); undecodable -> DLQ (+ `invalid` if a thread id is readable);
2. check the key is the record's `thread_id`; else DLQ + `invalid`;
3. load the thread's state, apply the core, encode its outputs with the configured codec;
4. hand back the state to save (also for a replayed record: see `handle`);
5. a record whose outputs or state would be larger than the output topics accept, or that the
   worker itself fails on (a bug, not bad input), is dead-lettered and changes nothing: the
   broker would refuse it, and the partition would stop on it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.partitioner import murmur2

from config.settings import Settings
from processors.core import OUTCOMES, STORE, Output, Position, ThreadState, apply_in_place
from processors.core.replay import invalid_outcome
from processors.core.replay_rule import replay_missing
from processors.worker.output_batch import Headers
from schemas.codec import Codec, InputDecoder, make_codec
from schemas.errors import DecodeError
from schemas.records import Command, Event, parse_input

log = logging.getLogger("orchestral.worker")

# On a record the worker forwarded to its thread's partition: where it was first read.
FORWARDED_FROM: Final = "orchestral-forwarded-from"


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """A record to produce: an output encoded for its topic, or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None  # None only for a dead-lettered tombstone, kept as it came
    headers: Headers | None = None
    # The output `value` encodes (None for a dead letter): the thread log indexes it as is.
    record: dict[str, Any] | None = None


@dataclass(slots=True)
class Handled:
    records: list[KafkaRecord] = field(default_factory=list)
    # The thread and its state to save; None for a dead-lettered record.
    thread_id: str | None = None
    state: ThreadState | None = None
    replayed: bool = False
    # At or before the thread's applied offset, but not a replay it can repeat: applied as new
    # (processors.core.runtime.replay_missing).
    replay_missing: bool = False
    status: str | None = None  # of the record's outcome, when it has one
    # Dead-lettered by the worker's own rules, not for being bad input: why.
    internal_error: bool = False
    too_large: bool = False
    state_bytes: bytes | None = None  # `state` encoded, once it fits (`within_size_limit`)


class RecordHandler:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
        self.limits = settings.limits()
        self.codec = codec or make_codec(settings.codec)
        self.decoder = InputDecoder()
        self._topics = {STORE: settings.store_topic, OUTCOMES: settings.outcomes_topic}

    def handle(
        self,
        key: bytes | None,
        value: bytes | None,
        position: Position,
        load: Callable[[str], ThreadState | None],
        *,
        committed_offset: int | None = None,
        origin: str | None = None,
    ) -> Handled:
        """`origin`: for a record forwarded from another partition, where it was first read
        (`forward`); its derived event id is taken from there, so a second copy of it (an
        at-least-once forward repeated after a crash) is answered `duplicate`, never applied
        twice."""
        raw: Any = None
        try:
            raw = self.decoder.decode_value(value)
            record = parse_input(raw)
            _check_key(key, record)
        except DecodeError as exc:
            return self._dead_letter(key, value, raw, exc, position)
        if origin is not None and record.event_id is None:
            record = record.model_copy(update={"event_id": origin})
        state = load(record.thread_id) or ThreadState(record.thread_id)
        before = (state.partition, state.offset)
        missing = replay_missing(state, position)
        outputs = apply_in_place(
            state, record, position, self.limits, committed_offset=committed_offset
        )
        # A replayed record is saved again too: the write that first followed it may be lost
        # (killed before the flush) or aborted (exactly-once), and the offset is about to move
        # past it. The state is a full snapshot, so writing it again is idempotent.
        return Handled(
            records=self.encode(outputs),
            thread_id=record.thread_id,
            state=state,
            replayed=(state.partition, state.offset) == before,
            replay_missing=missing,
            status=_status(outputs),
        )

    def handle_safely(
        self,
        key: bytes | None,
        value: bytes | None,
        position: Position,
        load: Callable[[str], ThreadState | None],
        *,
        committed_offset: int | None = None,
        origin: str | None = None,
    ) -> Handled:
        """`handle`, then the size rule; a failure of the worker itself on a record is
        dead-lettered (a bug must not stop the partition)."""
        try:
            handled = self.handle(
                key, value, position, load, committed_offset=committed_offset, origin=origin
            )
        except Exception as exc:
            log.exception("internal error on %s:%s:%s", *_where(position))
            handled = self.dead_letter_internal(key, value, exc, position)
            handled.internal_error = True
        return self.within_size_limit(handled, key, value, position)

    def within_size_limit(
        self, handled: Handled, key: bytes | None, value: bytes | None, position: Position
    ) -> Handled:
        """`handled` with its state encoded; when one of its records or its state would be
        larger than ORCHESTRAL_MAX_OUTPUT_BYTES, the input dead-lettered instead, the thread
        left as it was."""
        state = None
        if handled.state is not None and handled.thread_id is not None:
            state = handled.state.to_bytes()
        sizes = [_size(r.key, r.value, r.headers) for r in handled.records]
        largest = max([*sizes, len(state or b"")])
        limit = self.settings.max_output_bytes
        if largest <= limit:
            handled.state_bytes = state
            return handled
        error = OutputTooLarge(
            f"an output of this record would be {largest} bytes, over "
            f"ORCHESTRAL_MAX_OUTPUT_BYTES ({limit})"
        )
        log.error("%s:%s:%s: %s", *_where(position), error)
        dead = self.dead_letter_internal(key, value, error, position)
        dead.too_large = True
        return dead

    def encode(self, outputs: list[Output]) -> list[KafkaRecord]:
        return [
            KafkaRecord(
                self._topics[topic],
                value["thread_id"].encode(),
                self.codec.encode(value),
                record=value,
            )
            for topic, value in outputs
        ]

    def dead_letter_internal(
        self, key: bytes | None, value: bytes | None, error: Exception, position: Position
    ) -> Handled:
        """A record the worker itself failed on: kept in the DLQ rather than blocking."""
        reason = DecodeError(f"internal error: {type(error).__name__}: {error}")
        return self._dead_letter(key, value, None, reason, position)

    def _dead_letter(
        self,
        key: bytes | None,
        value: bytes | None,
        raw: Any,
        error: DecodeError,
        position: Position,
    ) -> Handled:
        headers: Headers = [
            ("error", error.reason.encode()),
            ("source_topic", position.topic.encode()),
            ("source_partition", str(position.partition).encode()),
            ("source_offset", str(position.offset).encode()),
        ]
        records = [KafkaRecord(self.settings.dlq_topic, key, value, headers)]
        invalid = invalid_outcome(raw, error, position)
        if invalid is not None:
            records.extend(self.encode([invalid]))
        return Handled(records=records, status=_status([invalid] if invalid else []))


class OutputTooLarge(Exception):
    """An output record or thread state larger than the output topics accept."""


def _size(key: bytes | None, value: bytes | None, headers: Headers | None) -> int:
    """A record's size as the broker counts it, to within its fixed framing."""
    framing = 128
    return (
        framing
        + len(key or b"")
        + len(value or b"")
        + sum(len(k) + len(v) for k, v in headers or ())
    )


def _where(position: Position) -> tuple[str, int, int]:
    return position.topic, position.partition, position.offset


def _status(outputs: list[Output]) -> str | None:
    for topic, value in outputs:
        if topic == OUTCOMES and value["type"] == "outcome":
            return str(value["status"])
    return None


def home_partition(key: bytes, partitions: int) -> int:
    """A thread's partition: murmur2 of its UTF-8 id, as Kafka's Java client and aiokafka
    partition by default (contract, Topics)."""
    return _hash(key) % partitions


# aiokafka's murmur2 is pure Python (~3 us for a short key) and runs for every record: its
# value per key is cached (a thread's records repeat the key; the cache's own lookup is C).
@functools.lru_cache(maxsize=65_536)
def _hash(key: bytes) -> int:
    return int(murmur2(key) & 0x7FFFFFFF)


def forward(
    key: bytes | None, headers: Headers, position: Position, partitions: int
) -> tuple[int, Headers] | None:
    """Where a record that landed on another partition than its thread's must go, and its
    headers there; None to handle it where it is.

    A producer with another partitioner (librdkafka's default, `consistent_random`) puts some
    threads elsewhere; handled there, one thread would have two states. A record without a key
    is handled (and dead-lettered) where it is, and so is one forwarded once already: should two
    workers disagree on the partition count while the topic grows, it cannot bounce.
    """
    if key is None or any(name == FORWARDED_FROM for name, _ in headers):
        return None
    home = home_partition(key, partitions)
    if home == position.partition:
        return None
    origin = f"{position.topic}:{position.partition}:{position.offset}".encode()
    return home, [*headers, (FORWARDED_FROM, origin)]


def origin_of(headers: Headers) -> str | None:
    for name, value in headers:
        if name == FORWARDED_FROM:
            return value.decode("utf-8", "replace")
    return None


def _check_key(key: bytes | None, record: Event | Command) -> None:
    """Records of a thread must be keyed by it: the key decides the partition, hence the order."""
    expected = record.thread_id.encode()
    if key != expected:
        shown = "null" if key is None else repr(key[:64].decode("utf-8", "replace"))
        raise DecodeError(
            f"key {shown} does not match thread_id {record.thread_id[:64]!r}",
            thread_id=record.thread_id,
        )
