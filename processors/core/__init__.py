"""The thread runtime, pure: state, policies and transitions, with no I/O, clock or randomness.

- `apply(state, record, position, limits)` -> (new state, outputs): one record of one thread.
- `Limits` (the knobs), `Position` and `Output` (outputs.py: the records the core produces).
- `replay(records, limits=None)` -> outputs: the whole core over a list, the worker's oracle.
- `earliest_deadline(state, limits)`, `due_deadlines(state, limits, now)` -> `Deadline`s, each
  with its `expire_command(thread_id, now)`: what the worker's deadline timer asks (deadlines.py).
"""

from processors.core.deadlines import (
    Deadline,
    due_deadlines,
    earliest_deadline,
    expire_command,
    pending_deadlines,
)
from processors.core.limits import Limits, Policy
from processors.core.outputs import OUTCOMES, STORE, Output, Position
from processors.core.policy import Action, Decision, decide, effective_policy
from processors.core.replay import default_limits, invalid_outcome, process_value, replay
from processors.core.runtime import apply, apply_in_place
from processors.core.state import Interaction, QueuedEvent, ThreadState

__all__ = [
    "OUTCOMES",
    "STORE",
    "Action",
    "Deadline",
    "Decision",
    "Interaction",
    "Limits",
    "Output",
    "Policy",
    "Position",
    "QueuedEvent",
    "ThreadState",
    "apply",
    "apply_in_place",
    "decide",
    "default_limits",
    "due_deadlines",
    "earliest_deadline",
    "effective_policy",
    "expire_command",
    "invalid_outcome",
    "pending_deadlines",
    "process_value",
    "replay",
]
