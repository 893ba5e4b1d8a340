"""The state of one thread, and its compact serialization (it lives in RocksDB, one key a thread).

Serialized as a JSON array of positional fields (no field names), versioned by its first element,
so a thread with a few interactions takes a few hundred bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from processors.core.outputs import Output
from schemas.records import TERMINAL_STATES, PolicySpec

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

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_wire(self) -> list[Any]:
        return [
            self.id, self.state, self.started_at, self.cause_event_id, self.ended_at,
            self.task_ids, self.wait_kind, self.rolled_back,
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, v: list[Any]) -> Interaction:
        return cls(v[0], v[1], v[2], v[3], v[4], list(v[5]), v[6], v[7])


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
            ]
        ).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> ThreadState:
        v = _DECODER.decode(data.decode("utf-8"))
        if v[0] != STATE_FORMAT:
            raise ValueError(f"unknown thread state format {v[0]!r}")
        interactions = (Interaction.from_wire(i) for i in v[3])
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
        )
