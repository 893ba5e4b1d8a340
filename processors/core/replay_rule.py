"""The replay rule: a record read again after a crash or rebalance is recognised by its
position and repeats its outputs exactly; anything else is applied as new.

Each thread's state carries the outputs of its records not yet committed (`recent`), by offset,
and the position of the last record applied (partition, offset, and the topic's incarnation,
`epoch`). The worker prunes the buffer with its committed offset.
"""

from __future__ import annotations

from processors.core.limits import Limits
from processors.core.outputs import Output, Position
from processors.core.state import ThreadState
from schemas.records import Command, Event


def applied_before(state: ThreadState, position: Position) -> bool:
    """Is `position` at or before the last record applied to `state`, in the same partition of
    the same incarnation of the topic? Then it was applied already: a replay."""
    return (
        position.partition == state.partition
        and position.offset <= state.offset
        and _same_epoch(state, position)
    )


def _same_epoch(state: ThreadState, position: Position) -> bool:
    return position.epoch is None or state.epoch is None or position.epoch == state.epoch


def replay_missing(state: ThreadState, position: Position) -> bool:
    """A record at or before the thread's applied offset whose outputs are not in the replay
    buffer: not a replay this state can repeat. It happens when the local state outlived its
    topic (a recreated topic or a wiped cluster the identity check at start did not see), or
    when more records of one thread than the buffer holds went uncommitted. Applied as new."""
    return applied_before(state, position) and position.offset not in state.recent


def remember(
    state: ThreadState,
    record: Event | Command,
    position: Position,
    outputs: list[Output],
    *,
    invalid: bool,
    limits: Limits,
    committed_offset: int | None,
) -> None:
    """After a record was applied: its event id for the dedupe window, its position as the
    thread's last applied one, and its outputs in the replay buffer (less what is committed)."""
    event_id, offset = record.event_id, position.offset
    # An `invalid` record changed nothing: its id stays free for a corrected resend.
    if event_id is not None and not invalid and limits.dedupe_window:
        seen = state.seen
        seen[event_id] = offset
        if len(seen) > limits.dedupe_window:
            del seen[next(iter(seen))]
    recent = state.recent
    if position.partition != state.partition or not _same_epoch(state, position):
        recent.clear()  # offsets of another partition or topic incarnation mean nothing here
        state.partition = position.partition
    if position.epoch is not None:
        state.epoch = position.epoch  # a state saved before epochs keeps its buffer
    state.offset = offset
    if committed_offset is not None and recent:
        for old in [o for o in recent if o < committed_offset]:
            del recent[old]
    recent[offset] = outputs
    if len(recent) > limits.replay_buffer:
        del recent[next(iter(recent))]
