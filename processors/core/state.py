"""The state of one thread, and its compact serialization (it lives in RocksDB, one key a thread).

Format 2 (written now): one format byte, 0x02, then a MessagePack array of positional fields.
Strings that repeat a neighbour are written as a small int (a timestamp equal to the thread's
`updated_at`, say), interaction ids as 16 bytes, event ids that start with the thread id without
it, and the replay buffer holds each record's outputs as the bytes `packed_outputs` made of them
once, so saving the state never encodes them again and loading it never decodes them.

Format 1 (written before; still read, and still written for a state MessagePack cannot hold, such
as an int beyond 64 bits in a queued payload): a JSON array of positional fields, versioned by its
first element (so its first byte is `[`). Fields added later are trailing and optional (`epoch`
at 13, the configured deadlines at 14; an interaction's deadline clocks at 8-10): states saved
before them still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import msgspec

from processors.core import packed_outputs
from processors.core.outputs import Output
from schemas.records import TERMINAL_STATES, PolicySpec
from schemas.timestamps import from_nanos, to_nanos

STATE_FORMAT: Final = 2  # the format byte of what `to_bytes` writes
JSON_STATE_FORMAT: Final = 1  # the first element of a format-1 (JSON) state
_FORMAT_BYTE: Final = bytes((STATE_FORMAT,))
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODER: Final = json.JSONDecoder()
_PACK: Final = msgspec.msgpack.Encoder()
_UNPACK: Final = msgspec.msgpack.Decoder()
# Interaction states as one byte each; never renumber (format 2).
_STATE_CODES: Final = {
    name: code
    for code, name in enumerate(
        ("active", "waiting_user", "waiting_event", "paused", "completed", "failed", "cancelled")
    )
}
_STATE_NAMES: Final = tuple(_STATE_CODES)
# A timestamp field in format 2: None, a str, or one of these (the value it equals).
_SAME_AS_UPDATED: Final = 0
_SAME_AS_PREVIOUS: Final = 1  # since: as started_at; alive: as since
_SEP: Final = "\x1f"  # between the dedupe window's ids, written as one string

# The outputs of one applied record, for a replay: as applied, or as `packed_outputs` bytes.
Replayable: TypeAlias = list[Output] | bytes


@dataclass(slots=True)
class Interaction:
    id: str
    state: str
    started_at: str
    cause_event_id: str
    ended_at: str | None = None
    task_ids: list[str] = field(default_factory=list)
    wait_kind: str | None = None  # `wait_event` with a kind: only that kind resumes it
    rolled_back: bool = False
    # Deadlines (`deadlines.py`), for a non-terminal interaction only (None once terminal):
    since: str | None = None  # when it entered its current state (became active, or waiting)
    alive: str | None = None  # its executor's last sign of life: heartbeat, output or command
    wait_timeout: float | None = None  # this wait's own `timeout` (None: the thread's)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_wire(self) -> list[Any]:
        wire: list[Any] = [
            self.id, self.state, self.started_at, self.cause_event_id, self.ended_at,
            self.task_ids, self.wait_kind, self.rolled_back,
        ]  # fmt: skip
        if self.since is not None:
            # Trailing, and only while non-terminal, as nanosecond offsets (a few bytes where a
            # timestamp takes 22): `since` from `started_at`, `alive` from `since` (0 dropped).
            since = to_nanos(self.since)
            alive = to_nanos(self.alive) - since if self.alive is not None else 0
            wire.extend((since - to_nanos(self.started_at), alive or None, self.wait_timeout))
            while wire[-1] is None:
                wire.pop()
        return wire

    @classmethod
    def from_wire(cls, v: list[Any]) -> Interaction:
        since: str | None = None  # older states: filled in by ThreadState
        alive: str | None = None
        if len(v) > 8:
            since_ns = to_nanos(v[2]) + v[8]
            since = from_nanos(since_ns)
            alive = from_nanos(since_ns + v[9]) if len(v) > 9 and v[9] is not None else since
        wait_timeout = v[10] if len(v) > 10 else None
        return cls(v[0], v[1], v[2], v[3], v[4], list(v[5]), v[6], v[7], since, alive, wait_timeout)

    def pack(self, thread_id: str, updated_at: str | None) -> list[Any]:
        """Format 2: as `to_wire`, timestamps that repeat a neighbour as 0 or 1."""
        wire: list[Any] = [
            _id_bytes(self.id),
            _STATE_CODES.get(self.state, self.state),
            _time(self.started_at, updated_at, None),
            _event_id(self.cause_event_id, thread_id),
            None if self.ended_at is None else _time(self.ended_at, updated_at, None),
            self.task_ids,
            self.wait_kind,
            self.rolled_back,
        ]
        if self.since is not None or self.alive is not None or self.wait_timeout is not None:
            since = None if self.since is None else _time(self.since, updated_at, self.started_at)
            alive = None if self.alive is None else _time(self.alive, updated_at, self.since)
            wire.extend((since, alive, self.wait_timeout))
            while wire[-1] is None:
                wire.pop()
        return wire

    @classmethod
    def unpack(cls, v: list[Any], thread_id: str, updated_at: str | None) -> Interaction:
        iid, state = v[0], v[1]
        started_at = _untime(v[2], updated_at, None)
        since = _untime(v[8], updated_at, started_at) if len(v) > 8 else None
        return cls(
            _uuid_text(iid) if type(iid) is bytes else iid,
            _STATE_NAMES[state] if type(state) is int else state,
            started_at,
            _un_event_id(v[3], thread_id),
            _untime(v[4], updated_at, None),
            v[5],
            v[6],
            v[7],
            since,
            _untime(v[9], updated_at, since) if len(v) > 9 else None,
            v[10] if len(v) > 10 else None,
        )


@dataclass(slots=True)
class QueuedEvent:
    """An event accepted by the `queue` policy, stored only when it starts."""

    event_id: str
    event: dict[str, Any]  # the seed-shaped event, producer's interaction_id, no seq yet


@dataclass(slots=True)
class ThreadState:
    thread_id: str
    seq: int = 0  # last `seq` given to a stored event
    # Creation order is meaningful: "newest" means last inserted; retention purges the oldest.
    interactions: dict[str, Interaction] = field(default_factory=dict)
    queue: list[QueuedEvent] = field(default_factory=list)
    # Set by the `configure` command; None means "the settings' default".
    policy: PolicySpec | None = None
    max_interactions: int | None = None
    auto_cleanup: bool | None = None
    # Producer-given event ids seen recently -> the offset they were seen at (dedupe window).
    seen: dict[str, int] = field(default_factory=dict)
    # Position of the last input applied; a record at or before it is a replay.
    partition: int = -1
    offset: int = -1
    # Outputs of the records applied but maybe not committed yet, by offset, to re-emit them
    # (`replay_outputs`); `to_bytes` packs each once, in place.
    recent: dict[int, Replayable] = field(default_factory=dict)
    updated_at: str | None = None
    # The incarnation of the input topic `offset` belongs to (`Position.epoch`); None: unknown.
    epoch: int | None = None
    # Deadlines set by `configure` (seconds, 0 = none); None means "the settings' default".
    run_timeout: float | None = None
    idle_timeout: float | None = None
    wait_timeout: float | None = None
    thread_ttl: float | None = None

    def nonterminal(self) -> list[Interaction]:
        return [i for i in self.interactions.values() if not i.terminal]

    @property
    def busy(self) -> bool:
        return any(not i.terminal for i in self.interactions.values())

    def copy(self) -> ThreadState:
        """A deep copy: the core never shares mutable parts between two states."""
        return ThreadState.from_bytes(self.to_bytes())

    def replay_outputs(self, offset: int) -> list[Output] | None:
        """The outputs the record at `offset` produced, if the replay buffer still holds them."""
        outputs = self.recent.get(offset)
        if outputs is None:
            return None
        if isinstance(outputs, bytes):
            return packed_outputs.unpack(outputs, self.thread_id)
        return list(outputs)

    def to_bytes(self) -> bytes:
        """Format 2; format 1 for a state MessagePack cannot hold (see the module's doc)."""
        self._pack_recent()
        try:
            return _FORMAT_BYTE + _PACK.encode(self._wire())
        except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
            return self.to_json_bytes()

    def _pack_recent(self) -> None:
        recent = self.recent
        for offset, outputs in recent.items():
            if not isinstance(outputs, bytes):
                recent[offset] = packed_outputs.pack(outputs, self.thread_id)

    def _wire(self) -> list[Any]:
        tid, updated_at = self.thread_id, self.updated_at
        return [
            tid,
            self.seq,
            [i.pack(tid, updated_at) for i in self.interactions.values()],
            [[q.event_id, q.event] for q in self.queue],
            self.policy.model_dump(exclude_none=True) if self.policy else None,
            self.max_interactions,
            self.auto_cleanup,
            _pack_seen(self.seen, tid),
            self.partition,
            self.offset,
            [[offset, outputs] for offset, outputs in self.recent.items()],
            updated_at,
            self.epoch,
            *self._timeouts(),
        ]

    def to_json_bytes(self) -> bytes:
        """Format 1, as workers wrote it before format 2 (and tests write old states with)."""
        return _ENCODER.encode(
            [
                JSON_STATE_FORMAT,
                self.thread_id,
                self.seq,
                [i.to_wire() for i in self.interactions.values()],
                [[q.event_id, q.event] for q in self.queue],
                self.policy.model_dump(exclude_none=True) if self.policy else None,
                self.max_interactions,
                self.auto_cleanup,
                list(self.seen.items()),
                self.partition,
                self.offset,
                [[offset, self.replay_outputs(offset)] for offset in self.recent],
                self.updated_at,
                self.epoch,
                *self._timeouts(),
            ]
        ).encode("utf-8")

    def _timeouts(self) -> list[list[float | None]]:
        """The trailing field of `configure`d deadlines, left out when none is."""
        timeouts = [self.run_timeout, self.idle_timeout, self.wait_timeout, self.thread_ttl]
        return [] if all(t is None for t in timeouts) else [timeouts]

    @classmethod
    def from_bytes(cls, data: bytes) -> ThreadState:
        """Either format; ValueError for bytes that are neither."""
        if data[:1] == _FORMAT_BYTE:
            v = _UNPACK.decode(data[1:])
            if type(v) is not list:
                raise ValueError(f"not a thread state: a {type(v).__name__}")
            return cls._unpack(v)
        return cls._from_json(data)

    @classmethod
    def _unpack(cls, v: list[Any]) -> ThreadState:
        tid, updated_at = v[0], v[11]
        interactions = [Interaction.unpack(i, tid, updated_at) for i in v[2]]
        timeouts = v[13] if len(v) > 13 else (None, None, None, None)
        return cls(
            thread_id=tid,
            seq=v[1],
            interactions={i.id: i for i in interactions},
            queue=[QueuedEvent(q[0], q[1]) for q in v[3]],
            policy=_policy(v[4]),
            max_interactions=v[5],
            auto_cleanup=v[6],
            seen=_unpack_seen(v[7], tid),
            partition=v[8],
            offset=v[9],
            recent={offset: outputs for offset, outputs in v[10]},
            updated_at=updated_at,
            epoch=v[12],
            run_timeout=timeouts[0],
            idle_timeout=timeouts[1],
            wait_timeout=timeouts[2],
            thread_ttl=timeouts[3],
        )

    @classmethod
    def _from_json(cls, data: bytes) -> ThreadState:
        v = _DECODER.decode(data.decode("utf-8"))
        if v[0] != JSON_STATE_FORMAT:
            raise ValueError(f"unknown thread state format {v[0]!r}")
        interactions = [Interaction.from_wire(i) for i in v[3]]
        for interaction in interactions:
            if interaction.since is None and not interaction.terminal:
                # A state saved before deadlines: the thread's last record is the latest time
                # its interactions can have changed, so a deadline counted from it is not early.
                interaction.since = interaction.alive = v[12] or interaction.started_at
        timeouts = v[14] if len(v) > 14 and v[14] is not None else [None] * 4
        return cls(
            thread_id=v[1],
            seq=v[2],
            interactions={i.id: i for i in interactions},
            queue=[QueuedEvent(q[0], q[1]) for q in v[4]],
            policy=PolicySpec.model_validate(v[5]) if v[5] is not None else None,
            max_interactions=v[6],
            auto_cleanup=v[7],
            seen=dict(v[8]),
            partition=v[9],
            offset=v[10],
            recent={offset: [(t, r) for t, r in outs] for offset, outs in v[11]},
            updated_at=v[12],
            epoch=v[13] if len(v) > 13 else None,  # states saved before epochs: unknown
            run_timeout=timeouts[0],
            idle_timeout=timeouts[1],
            wait_timeout=timeouts[2],
            thread_ttl=timeouts[3],
        )


# --- format 2's compact fields ------------------------------------------------------------------

# Loaded policies, shared (frozen): most threads are configured alike. Bounded, as keys are data.
_POLICIES: dict[tuple[Any, ...], PolicySpec] = {}
_POLICY_CACHE_SIZE: Final = 256


def _policy(v: dict[str, Any] | None) -> PolicySpec | None:
    if v is None:
        return None
    key = tuple(v.items())
    spec = _POLICIES.get(key)
    if spec is None:
        if len(_POLICIES) >= _POLICY_CACHE_SIZE:
            _POLICIES.clear()
        spec = _POLICIES[key] = PolicySpec.model_validate(v)
    return spec


def _time(value: str, updated_at: str | None, previous: str | None) -> int | str:
    if value == updated_at:
        return _SAME_AS_UPDATED
    if value == previous:
        return _SAME_AS_PREVIOUS
    return value


def _untime(v: Any, updated_at: str | None, previous: str | None) -> Any:
    if type(v) is int:
        return updated_at if v == _SAME_AS_UPDATED else previous
    return v


def _event_id(value: str, thread_id: str) -> str | list[str]:
    """An event id that starts with the thread id (a common producer's choice), without it."""
    return [value[len(thread_id) :]] if value.startswith(thread_id) else value


def _un_event_id(v: str | list[str], thread_id: str) -> str:
    return thread_id + v[0] if isinstance(v, list) else v


def _pack_seen(seen: dict[str, int], thread_id: str) -> list[Any]:
    """[ids, offsets]. The ids, when every one starts with the thread id (a common producer's
    choice) and none holds the separator, as one string: each without the thread id, separated
    (C-speed joins and replaces; a list of strings otherwise). The offsets as differences from
    the one before (small numbers)."""
    ids: str | list[str] = list(seen)
    n, mark = len(seen), _SEP + thread_id
    joined = _SEP + _SEP.join(seen)
    if n and joined.count(_SEP) == n and joined.count(mark) == n:
        ids = joined.replace(mark, _SEP)[1:]
    offsets = list(seen.values())
    return [ids, [b - a for a, b in zip([0, *offsets], offsets, strict=False)]]


def _unpack_seen(v: list[Any], thread_id: str) -> dict[str, int]:
    ids, deltas = v
    if isinstance(ids, str):
        ids = [thread_id + i for i in ids.split(_SEP)]
    seen: dict[str, int] = {}
    offset = 0
    for event_id, delta in zip(ids, deltas, strict=True):
        offset += delta
        seen[event_id] = offset
    return seen


def _id_bytes(value: str) -> str | bytes:
    return packed_outputs.uuid_bytes(value) or value


def _uuid_text(raw: bytes) -> str:
    return packed_outputs.uuid_text(raw)
