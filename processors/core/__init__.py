"""The thread runtime, pure: state, policies and transitions, with no I/O, clock or randomness.

- `apply(state, record, position, limits)` -> (new state, outputs): one record of one thread.
- `Limits` (the knobs), `Position` and `Output` (outputs.py: the records the core produces).
- `replay(records, limits=None)` -> outputs: the whole core over a list, the worker's oracle.
"""

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
    "effective_policy",
    "invalid_outcome",
    "process_value",
    "replay",
]
