"""The replay buffer's encoding: the outputs of one record as compact bytes (MessagePack).

Encoded once, when the state holding them is first saved, and kept as bytes from then on: saving
the state again copies them, loading it does not decode them; only a replay does. Output records
of the core's own shapes (outcome, interaction, store) are written positionally, their field
names implied by the shape; each string written once per record's outputs (later occurrences
are small ints into a table of the strings seen so far, seeded with the vocabulary below and
the thread id), interaction ids as 16 bytes, and an interaction record's `event` as a
reference to the store record it is (contract: a transition to `active` carries it).
Anything else (another shape, a type outside MessagePack) falls back to JSON text.

The layout is part of state format 2 (state.py): never change it, add a new tag instead.
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec

from processors.core.outputs import OUTCOMES, STORE, Output
from schemas.records import EVENT_FIELDS

# Tags (first byte of the bytes): how the rest is written.
_PACKED: Final = 0x01  # MessagePack, the layout below
_JSON: Final = 0x02  # JSON text of [[topic, record], ...]: any shape, the exact fallback

# Per output, its kind, then its fields in wire order.
_OUTCOME: Final = 0
_INTERACTION: Final = 1
_STORED: Final = 2

OUTCOME_KEYS: Final = (
    "type", "thread_id", "source_event_id", "status", "interaction_id", "reason",
    "queue_position", "timestamp",
)  # fmt: skip
INTERACTION_KEYS: Final = (
    "type", "thread_id", "interaction_id", "state", "previous_state", "cause_event_id",
    "timestamp", "rolled_back", "reason", "event",
)  # fmt: skip
STORE_KEYS: Final = {
    kind: ("type", *fields, "seq", "event_id") for kind, fields in EVENT_FIELDS.items()
}
# Strings every table starts with (indices 0..N-1, the thread id at N). Never reorder.
VOCABULARY: Final = (
    "user_input", "assistant_output", "artifact", "external_event", "system_trace",
    "active", "waiting_user", "waiting_event", "paused", "completed", "failed", "cancelled",
    "started", "resumed", "merged", "queued", "rejected", "appended", "applied", "invalid",
    "duplicate", "info",
)  # fmt: skip

_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder()
_SEED: Final = {word: index for index, word in enumerate(VOCABULARY)}
_JSON_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))  # ASCII: any str reads back
_HEX: Final = frozenset("0123456789abcdef-")


class _NotPacked(Exception):
    """A value outside the layout: the outputs are written as JSON instead."""


def pack(outputs: list[Output], thread_id: str) -> bytes:
    """`outputs` as bytes that `unpack` turns back into equal outputs."""
    try:
        return bytes((_PACKED,)) + _ENCODER.encode(_Packer(thread_id).outputs(outputs))
    except (_NotPacked, OverflowError, TypeError, ValueError, msgspec.EncodeError):
        return bytes((_JSON,)) + _JSON_ENCODER.encode(outputs).encode("ascii")


def unpack(data: bytes, thread_id: str) -> list[Output]:
    if data[0] == _JSON:
        return [(topic, record) for topic, record in json.loads(data[1:].decode("ascii"))]
    if data[0] != _PACKED:
        raise ValueError(f"unknown replay buffer encoding 0x{data[0]:02x}")
    return _Unpacker(thread_id).outputs(_DECODER.decode(data[1:]))


def uuid_bytes(value: str) -> bytes | None:
    """A canonical lowercase UUID as its 16 bytes (None for anything else)."""
    if len(value) != 36 or value[8] != "-" or value[13] != "-" or value[18] != "-":
        return None
    if value[23] != "-" or not _HEX.issuperset(value):
        return None
    return bytes.fromhex(value.replace("-", ""))


def uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Packer:
    __slots__ = ("size", "stored", "table")

    def __init__(self, thread_id: str) -> None:
        self.table = _SEED.copy()
        self.table.setdefault(thread_id, len(VOCABULARY))  # a thread named like a word: either
        self.size = len(VOCABULARY) + 1  # the unpacker's table length
        self.stored: dict[int, int] = {}  # id() of a store record -> its index in the outputs

    def outputs(self, outputs: list[Output]) -> list[Any]:
        packed: list[Any] = []
        for index, (topic, record) in enumerate(outputs):
            kind = record.get("type")
            if topic == OUTCOMES and kind == "outcome":
                packed.append(self.outcome(record))
            elif topic == OUTCOMES and kind == "interaction":
                packed.append(self.interaction(record))
            elif topic == STORE:
                packed.append(self.store(record))
                self.stored[id(record)] = index
            else:
                raise _NotPacked
        return packed

    def outcome(self, r: dict[str, Any]) -> list[Any]:
        if tuple(r) != OUTCOME_KEYS or not _optional_int(r["queue_position"]):
            raise _NotPacked
        return self.values(r, _OUTCOME_HOW, [_OUTCOME])

    def interaction(self, r: dict[str, Any]) -> list[Any]:
        if tuple(r) != INTERACTION_KEYS or type(r["rolled_back"]) is not bool:
            raise _NotPacked
        packed = self.values(r, _INTERACTION_HOW, [_INTERACTION])  # all but `event`
        event = r["event"]
        if event is not None:
            # The store record it is (the common case), else the record itself.
            ref = self.stored.get(id(event))
            event = ref if ref is not None else self.store(event)
        packed.append(event)
        return packed

    def store(self, r: Any) -> list[Any]:
        kind = r.get("type") if type(r) is dict else None
        keys = STORE_KEYS.get(kind) if type(kind) is str else None
        if keys is None or tuple(r) != keys or type(r["seq"]) is not int:
            raise _NotPacked
        return self.values(r, _STORE_HOW[r["type"]], [_STORED])

    def values(self, r: dict[str, Any], hows: tuple[int, ...], packed: list[Any]) -> list[Any]:
        """`r`'s values (as many as `hows`) onto `packed`: each str once per table (later as its
        index), a UUID as 16 bytes, `_RAW` ones as they are. One loop, no call per field."""
        table = self.table
        for value, how in zip(r.values(), hows, strict=False):
            if how == _SKIP:
                continue
            if how == _RAW or value is None:
                packed.append(value)
                continue
            if type(value) is not str:
                raise _NotPacked
            index = table.get(value)
            if index is not None:
                packed.append(index)
                continue
            table[value] = self.size
            self.size += 1
            packed.append((uuid_bytes(value) or value) if how == _IDENT else value)
        return packed


# How `_Packer.values` writes each field, in wire order.
_SKIP, _RAW, _TEXT, _IDENT = 0, 1, 2, 3
_OUTCOME_HOW: Final = (_SKIP, _TEXT, _TEXT, _TEXT, _IDENT, _TEXT, _RAW, _TEXT)
_INTERACTION_HOW: Final = (_SKIP, _TEXT, _IDENT, _TEXT, _TEXT, _TEXT, _TEXT, _RAW, _TEXT)
_STORE_HOW: Final = {
    kind: tuple(
        _RAW if key in ("payload", "seq") else _IDENT if key == "interaction_id" else _TEXT
        for key in keys
    )
    for kind, keys in STORE_KEYS.items()
}


def _optional_int(value: Any) -> bool:
    return value is None or type(value) is int


class _Unpacker:
    __slots__ = ("records", "table")

    def __init__(self, thread_id: str) -> None:
        self.table: list[str] = [*VOCABULARY, thread_id]
        self.records: list[dict[str, Any]] = []

    def text(self, value: Any) -> Any:
        if value is None:
            return None
        if type(value) is int:
            return self.table[value]
        if type(value) is bytes:
            value = uuid_text(value)
        self.table.append(value)
        return value

    def outputs(self, packed: list[Any]) -> list[Output]:
        outputs: list[Output] = []
        for item in packed:
            kind = item[0]
            if kind == _OUTCOME:
                outputs.append((OUTCOMES, self.fields(OUTCOME_KEYS, item, ("queue_position",))))
            elif kind == _INTERACTION:
                record = self.fields(INTERACTION_KEYS[:-1], item, ("rolled_back",))
                event = item[9]
                if type(event) is int:
                    record["event"] = self.records[event]
                else:
                    record["event"] = None if event is None else self.store(event)
                outputs.append((OUTCOMES, record))
            else:
                outputs.append((STORE, self.store(item)))
            self.records.append(outputs[-1][1])
        return outputs

    def fields(
        self, keys: tuple[str, ...], item: list[Any], raw: tuple[str, ...]
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"type": "outcome" if keys is OUTCOME_KEYS else "interaction"}
        for key, value in zip(keys[1:], item[1:], strict=False):
            record[key] = value if key in raw else self.text(value)
        return record

    def store(self, item: list[Any]) -> dict[str, Any]:
        kind = self.table[item[1]]  # always in the vocabulary (STORE_KEYS)
        record: dict[str, Any] = {"type": kind}
        for key, value in zip(STORE_KEYS[kind][1:], item[2:], strict=True):
            record[key] = value if key == "payload" or key == "seq" else self.text(value)
        return record
