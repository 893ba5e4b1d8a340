"""Deadlines (contract, "Deadlines (v2)"): when a thread's interactions, or the thread, run out.

A pure function of the state and the limits, in logical time (the input records' timestamps):

- `run_timeout`: while `active`, due `since` (when it last became active) + the limit.
- `idle_timeout`: while `active`, due `alive` (its executor's last heartbeat, output or
  command, or its activation) + the limit.
- `wait_timeout`: while `waiting_user` / `waiting_event`, due `since` (when it began waiting) +
  the wait's own `timeout`, else the limit.
- `thread_ttl` (interaction None): while the thread is idle (nothing non-terminal, an empty
  queue) and not expired already, due `updated_at` (its last record) + the limit.

A limit is the thread's `configure`d value, else the `Limits` default; 0 means none. A `paused`
interaction has no deadline. The worker's timer asks `earliest_deadline` to index a thread,
`due_deadlines` once that time has passed by its clock, and produces each `expire_command`
to the events topic. The core applies an `expire` only if `holds`: the deadline it names is still
the state's (same interaction, same reason, exactly the same instant) and is not later than the
command's own timestamp. Anything else (a heartbeat moved it, the interaction changed state, a
`configure` changed the limit, it fired already) is stale: outcome `applied`, no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from processors.core.limits import Limits
from processors.core.state import Interaction, ThreadState
from schemas import timestamps

RUN_TIMEOUT: Final = "run_timeout"
IDLE_TIMEOUT: Final = "idle_timeout"
WAIT_TIMEOUT: Final = "wait_timeout"
THREAD_TTL: Final = "thread_ttl"
_WAITING: Final = frozenset({"waiting_user", "waiting_event"})
_NANOS_PER_SECOND: Final = 1_000_000_000


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """One pending deadline. Ordered by time (`nanos`), then interaction and reason."""

    nanos: int  # `at` in nanoseconds since the epoch, for ordering without parsing
    interaction_id: str | None  # None: the thread's own (`thread_ttl`)
    reason: str
    at: str  # RFC 3339 UTC, the core's format (`schemas.timestamps`)

    def expire_command(self, thread_id: str, now: str) -> dict[str, Any]:
        """The `expire` command the worker's timer produces for this deadline at `now`."""
        return expire_command(thread_id, self, now)


def expire_command(thread_id: str, deadline: Deadline, now: str) -> dict[str, Any]:
    """The contract's `expire` command, with its derived event id (one per deadline)."""
    iid = deadline.interaction_id
    return {
        "type": "command",
        "command": "expire",
        "thread_id": thread_id,
        "interaction_id": iid,
        "reason": deadline.reason,
        "deadline": deadline.at,
        "timestamp": now,
        "event_id": f"expire:{iid or ''}:{deadline.reason}:{deadline.at}",
    }


def pending_deadlines(state: ThreadState, limits: Limits) -> list[Deadline]:
    """Every pending deadline of the thread, earliest first."""
    found = [
        deadline
        for interaction in state.interactions.values()
        for deadline in _of_interaction(state, interaction, limits)
    ]
    ttl = _thread_ttl(state, limits)
    if ttl is not None:
        found.append(ttl)
    found.sort()
    return found


def due_deadlines(state: ThreadState, limits: Limits, now: str) -> list[Deadline]:
    """The deadlines at or before `now` (an RFC 3339 timestamp), earliest first."""
    limit = timestamps.to_nanos(timestamps.normalize(now))
    return [d for d in pending_deadlines(state, limits) if d.nanos <= limit]


def earliest_deadline(state: ThreadState, limits: Limits) -> str | None:
    """When the thread's first deadline falls due (RFC 3339 UTC), or None if it has none."""
    found = pending_deadlines(state, limits)
    return found[0].at if found else None


def deadline_of(
    state: ThreadState, limits: Limits, interaction_id: str | None, reason: str
) -> Deadline | None:
    """The state's current deadline for `reason` of that interaction (None: the thread's)."""
    if interaction_id is None:
        return _thread_ttl(state, limits) if reason == THREAD_TTL else None
    interaction = state.interactions.get(interaction_id)
    if interaction is None:
        return None
    for deadline in _of_interaction(state, interaction, limits):
        if deadline.reason == reason:
            return deadline
    return None


def holds(
    state: ThreadState,
    limits: Limits,
    interaction_id: str | None,
    reason: str,
    deadline: str,
    now: str,
) -> bool:
    """Does an `expire` (reason, deadline, at `now`) still hold? Then the core applies it.

    It holds when the state's current deadline for that interaction and reason is exactly the
    instant the command names, and that instant is not after the command's own timestamp:
    an expire never fires early, and one computed from an older state never fires at all.
    """
    current = deadline_of(state, limits, interaction_id, reason)
    if current is None:
        return False
    named = timestamps.to_nanos(deadline)
    return current.nanos == named and named <= timestamps.to_nanos(now)


def _of_interaction(state: ThreadState, interaction: Interaction, limits: Limits) -> list[Deadline]:
    since = interaction.since
    if since is None or interaction.terminal:
        return []
    iid = interaction.id
    found: list[Deadline | None] = []
    if interaction.state == "active":
        run = _limit(state.run_timeout, limits.run_timeout)
        idle = _limit(state.idle_timeout, limits.idle_timeout)
        found.append(_after(iid, RUN_TIMEOUT, since, run))
        found.append(_after(iid, IDLE_TIMEOUT, interaction.alive or since, idle))
    elif interaction.state in _WAITING:
        wait = _limit(state.wait_timeout, limits.wait_timeout)
        if interaction.wait_timeout is not None:
            wait = interaction.wait_timeout
        found.append(_after(iid, WAIT_TIMEOUT, since, wait))
    return [d for d in found if d is not None]


def _thread_ttl(state: ThreadState, limits: Limits) -> Deadline | None:
    # `updated_at` is None on a thread never applied a record to, or expired (nothing left).
    if state.updated_at is None or state.queue or state.busy:
        return None
    return _after(None, THREAD_TTL, state.updated_at, _limit(state.thread_ttl, limits.thread_ttl))


def _limit(configured: float | None, default: float) -> float:
    return default if configured is None else configured


def _after(iid: str | None, reason: str, start: str, seconds: float) -> Deadline | None:
    """`start` + `seconds` as a deadline; none for 0, or past what RFC 3339 can write."""
    if seconds <= 0:
        return None
    nanos = timestamps.to_nanos(start) + round(seconds * _NANOS_PER_SECOND)
    if nanos > timestamps.MAX_NANOS:
        return None  # later than year 9999: never, in practice
    return Deadline(nanos, iid, reason, timestamps.from_nanos(nanos))
