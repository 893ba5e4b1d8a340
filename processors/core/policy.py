"""Concurrency policies: which policy applies to an event, and what it decides.

`decide` is the contract's decision table, a pure function of a few counts:

| policy    | idle  | busy                                                                 |
|-----------|-------|----------------------------------------------------------------------|
| interrupt | start | cancel every non-terminal interaction, then start                    |
| reject    | start | reject "System is busy processing another request"                   |
| parallel  | start | start while non-terminal < max_parallel, else reject                 |
| merge     | start | merge into the newest active one; none active: start beside them     |
| queue     | start | queue (position); full: reject "Queue full (N)"                      |
| rollback  | start | as interrupt, the cancelled interactions marked rolled back          |

`merge` with an `expected_interaction_id` that is not active falls back to `queue`.
"Start beside" cancels nothing and purges nothing: the seed's MergeIntoRunning path creates
the interaction directly, where an idle start goes through its interrupt path, which purges.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from processors.core.limits import Limits, Policy
from schemas.records import PolicySpec


def effective_policy(
    override: PolicySpec | None, configured: PolicySpec | None, limits: Limits
) -> Policy:
    """The event's own override, else the thread's `configure`d policy, else the default."""
    spec = override or configured
    if spec is None:
        return limits.default
    return Policy(
        name=spec.name,
        max_parallel=spec.max_parallel or limits.max_parallel,
        max_queue_depth=spec.max_queue_depth or limits.max_queue_depth,
    )


class Action(enum.Enum):
    START = "start"
    START_BESIDE = "start_beside"  # start next to the non-terminal ones, purging nothing
    INTERRUPT = "interrupt"  # cancel every non-terminal interaction, then start
    ROLLBACK = "rollback"  # as INTERRUPT, the cancelled ones marked rolled back
    MERGE = "merge"
    QUEUE = "queue"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str | None = None


BUSY_REASON = "System is busy processing another request"
# The decisions without a reason, made once (decide runs for every new turn).
_START, _START_BESIDE = Decision(Action.START), Decision(Action.START_BESIDE)
_INTERRUPT, _ROLLBACK = Decision(Action.INTERRUPT), Decision(Action.ROLLBACK)
_MERGE, _QUEUE = Decision(Action.MERGE), Decision(Action.QUEUE)
_BUSY = Decision(Action.REJECT, BUSY_REASON)


def decide(
    policy: Policy,
    *,
    nonterminal: int,
    queue_len: int,
    merge_target: bool = False,
    expected_interaction: bool = False,
) -> Decision:
    """What to do with an event that resumed nothing.

    `merge_target`: an interaction to merge into exists (the expected one, or any active one).
    `expected_interaction`: the event named the interaction it must merge into.
    """
    name = policy.name
    if name == "merge":
        if merge_target:
            return _MERGE
        if not expected_interaction:
            # Nothing active: start, cancel nothing; busy, purge nothing either.
            return _START if nonterminal == 0 else _START_BESIDE
        name = "queue"
    if name == "parallel":
        if nonterminal >= policy.max_parallel:
            return Decision(
                Action.REJECT, f"Maximum parallel interactions ({policy.max_parallel}) reached"
            )
        return _START
    if nonterminal == 0:
        return _START
    if name == "interrupt":
        return _INTERRUPT
    if name == "rollback":
        return _ROLLBACK
    if name == "reject":
        return _BUSY
    if queue_len >= policy.max_queue_depth:
        return Decision(Action.REJECT, f"Queue full ({policy.max_queue_depth})")
    return _QUEUE
