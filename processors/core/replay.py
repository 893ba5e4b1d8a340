"""`replay`: the whole core over a list of input records, in memory. The worker's oracle.

The worker must produce exactly what `replay` produces for the same input: same store records,
same outcome and interaction records, in the same order per thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from processors.core import ids
from processors.core.limits import Limits
from processors.core.outputs import OUTCOMES, Output, Position, outcome_record
from processors.core.runtime import apply_in_place
from processors.core.state import ThreadState
from schemas import timestamps
from schemas.errors import DecodeError
from schemas.records import parse_input

# A decoded input value, or (partition, offset, value) to replay records at their real position.
ReplayItem: TypeAlias = Mapping[str, Any] | tuple[int, int, Mapping[str, Any]]


def default_limits() -> Limits:
    """The documented defaults (replay must not depend on the environment)."""
    return Limits()


def replay(records: Iterable[ReplayItem], limits: Limits | None = None) -> list[Output]:
    """Every output record, in order, as ("store" | "outcomes", decoded value) pairs.

    A record without `event_id` gets the id derived from its position: its index in `records`
    on partition 0 of the events topic, unless it is given as (partition, offset, value).
    """
    limits = limits or default_limits()
    states: dict[str, ThreadState] = {}
    outputs: list[Output] = []
    for index, item in enumerate(records):
        partition, offset, value = item if isinstance(item, tuple) else (0, index, item)
        position = Position(limits.events_topic, partition, offset)
        outputs.extend(process_value(states, value, position, limits))
    return outputs


def process_value(
    states: dict[str, ThreadState], value: Any, position: Position, limits: Limits
) -> list[Output]:
    """One decoded value against an in-memory map of thread states (invalid ones answered)."""
    try:
        record = parse_input(dict(value) if isinstance(value, Mapping) else value)
    except DecodeError as exc:
        invalid = invalid_outcome(value, exc, position)
        return [invalid] if invalid is not None else []
    state = states.get(record.thread_id)
    if state is None:
        state = states[record.thread_id] = ThreadState(record.thread_id)
    # Nothing before this record will be re-read: keep no replay buffer.
    return apply_in_place(state, record, position, limits, committed_offset=position.offset)


def invalid_outcome(value: Any, error: DecodeError, position: Position) -> Output | None:
    """The `invalid` outcome of a record that failed validation, when its thread id is known."""
    thread_id = error.thread_id
    if thread_id is None:
        return None
    raw = value if isinstance(value, Mapping) else {}
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        event_id = ids.derived_event_id(position.topic, position.partition, position.offset)
    interaction_id = raw.get("interaction_id")
    try:
        timestamp: str | None = timestamps.normalize(raw.get("timestamp"))
    except DecodeError:
        timestamp = None
    return (
        OUTCOMES,
        outcome_record(
            thread_id,
            event_id,
            "invalid",
            interaction_id if isinstance(interaction_id, str) else None,
            error.reason,
            None,
            timestamp,
        ),
    )
