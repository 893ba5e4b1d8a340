"""The state of one thread, and its compact serialization (it lives in RocksDB, one key a thread).

Serialized as a JSON array of positional fields (no field names), versioned by its first element,
so a thread with a few interactions takes a few hundred bytes. Fields added later are trailing
and optional (`epoch` at 13, the configured deadlines at 14; an interaction's deadline clocks at
8-10): states saved before them still load, and readers before them ignore them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from processors.core.outputs import Output
from schemas.records import TERMINAL_STATES, PolicySpec
from schemas.timestamps import from_nanos, to_nanos

STATE_FORMAT: Final = 1
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_DECODER: Final = json.JSONDecoder()


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
    # Outputs of the records applied but maybe not committed yet, by offset, to re-emit them.
    recent: dict[int, list[Output]] = field(default_factory=dict)
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

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(
            [
                STATE_FORMAT,
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
                list(self.recent.items()),
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
        v = _DECODER.decode(data.decode("utf-8"))
        if v[0] != STATE_FORMAT:
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
