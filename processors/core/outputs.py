"""The core's output vocabulary: where an input was read, and the records it produces.

An output is `(STORE | OUTCOMES, record)`, the record as it appears on the wire, decoded; the
shell encodes it with the configured codec and produces it to the topic the name stands for.
Builders here give each record its wire field order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeAlias

STORE: Final = "store"
OUTCOMES: Final = "outcomes"

# ("store" | "outcomes", the record as it appears on the wire, decoded)
Output: TypeAlias = tuple[str, dict[str, Any]]

# The seed's lifecycle traces (seed-semantics §8.4): the store's own marks that history reads.
LIFECYCLE_CATEGORY: Final = "runtime_lifecycle"
TURN_ROLLED_BACK: Final = "turn_rolled_back"
THREAD_EXPIRED: Final = "thread_expired"  # `expire` with reason `thread_ttl`
THREAD_DELETED: Final = "thread_deleted"  # `delete_thread`


@dataclass(frozen=True, slots=True)
class Position:
    """Where an input record was read: the replay and derived-id anchor."""

    topic: str
    partition: int
    offset: int
    # The incarnation of the topic (the worker derives it from the topic id): offsets of a
    # deleted and recreated topic start again at 0. None: unknown, offsets are trusted.
    epoch: int | None = None


def outcome_record(
    thread_id: str,
    source_event_id: str | None,
    status: str,
    interaction_id: str | None,
    reason: str | None,
    queue_position: int | None,
    timestamp: str | None,
) -> dict[str, Any]:
    """The `outcome` record, in wire field order."""
    return {
        "type": "outcome",
        "thread_id": thread_id,
        "source_event_id": source_event_id,
        "status": status,
        "interaction_id": interaction_id,
        "reason": reason,
        "queue_position": queue_position,
        "timestamp": timestamp,
    }


def interaction_record(
    thread_id: str,
    interaction_id: str,
    state: str,
    previous_state: str | None,
    cause_event_id: str,
    timestamp: str,
    rolled_back: bool,
    reason: str | None = None,
    event: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An `interaction` record (one per state change), in wire field order.

    `reason`: the deadline that failed it (`expire`), else None. `event`: on a transition to
    `active`, the stored record that caused it (the started, resumed or dequeued event).
    """
    return {
        "type": "interaction",
        "thread_id": thread_id,
        "interaction_id": interaction_id,
        "state": state,
        "previous_state": previous_state,
        "cause_event_id": cause_event_id,
        "timestamp": timestamp,
        "rolled_back": rolled_back,
        "reason": reason,
        "event": event,
    }


def thread_trace(thread_id: str, payload: dict[str, Any], timestamp: str) -> dict[str, Any]:
    """A thread-level `system_trace` in the seed's field order, as `Event::trace` builds it."""
    return {
        "type": "system_trace",
        "thread_id": thread_id,
        "interaction_id": None,
        "level": "info",
        "payload": payload,
        "task_id": None,
        "step_id": None,
        "timestamp": timestamp,
    }
