"""One Kafka record in, the records to produce and the state to save out. No I/O.

The worker's agent is a thin loop around `RecordHandler.handle`; this module is the part of the
shell that can be tested without a broker:

1. decode the value (either codec); undecodable -> DLQ (+ `invalid` if a thread id is readable);
2. check the key is the record's `thread_id`; else DLQ + `invalid`;
3. load the thread's state, apply the core, encode its outputs with the configured codec;
4. hand back the state to save (also for a replayed record: see `handle`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from processors.core import OUTCOMES, STORE, Output, Position, ThreadState, apply_in_place
from processors.core.replay import invalid_outcome
from schemas.codec import Codec, InputDecoder, make_codec
from schemas.errors import DecodeError
from schemas.records import Command, Event, parse_input

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None  # None only for a dead-lettered tombstone, kept as it came
    headers: Headers | None = None


@dataclass(slots=True)
class Handled:
    records: list[OutRecord] = field(default_factory=list)
    # The thread and its state to save; None for a dead-lettered record.
    thread_id: str | None = None
    state: ThreadState | None = None
    replayed: bool = False


class RecordHandler:
    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        self.settings = settings
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
    ) -> Handled:
        raw: Any = None
        try:
            raw = self.decoder.decode_value(value)
            record = parse_input(raw)
            _check_key(key, record)
        except DecodeError as exc:
            return self._dead_letter(key, value, raw, exc, position)
        state = load(record.thread_id) or ThreadState(record.thread_id)
        before = (state.partition, state.offset)
        outputs = apply_in_place(
            state, record, position, self.settings, committed_offset=committed_offset
        )
        # A replayed record is saved again too: the write that first followed it may be lost
        # (killed before the flush) or aborted (exactly-once), and the offset is about to move
        # past it. The state is a full snapshot, so writing it again is idempotent.
        return Handled(
            records=self.encode(outputs),
            thread_id=record.thread_id,
            state=state,
            replayed=(state.partition, state.offset) == before,
        )

    def encode(self, outputs: list[Output]) -> list[OutRecord]:
        return [
            OutRecord(self._topics[topic], value["thread_id"].encode(), self.codec.encode(value))
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
        records = [OutRecord(self.settings.dlq_topic, key, value, headers)]
        invalid = invalid_outcome(raw, error, position)
        if invalid is not None:
            records.extend(self.encode([invalid]))
        return Handled(records=records)


def _check_key(key: bytes | None, record: Event | Command) -> None:
    """Records of a thread must be keyed by it: the key decides the partition, hence the order."""
    expected = record.thread_id.encode()
    if key != expected:
        shown = "null" if key is None else repr(key[:64].decode("utf-8", "replace"))
        raise DecodeError(
            f"key {shown} does not match thread_id {record.thread_id[:64]!r}",
            thread_id=record.thread_id,
        )
