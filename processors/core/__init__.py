"""The thread runtime, pure: state, policies and transitions, with no I/O, clock or randomness.

- `apply(state, record, position, settings)` -> (new state, outputs): one record of one thread.
- `replay(records, settings=None)` -> outputs: the whole core over a list, the worker's oracle.
"""

from processors.core.policy import Action, Decision, Policy, decide, effective_policy
from processors.core.replay import default_settings, invalid_outcome, process_value, replay
from processors.core.runtime import OUTCOMES, STORE, Position, apply, apply_in_place
from processors.core.state import Interaction, Output, QueuedEvent, ThreadState

__all__ = [
    "OUTCOMES",
    "STORE",
    "Action",
    "Decision",
    "Interaction",
    "Output",
    "Policy",
    "Position",
    "QueuedEvent",
    "ThreadState",
    "apply",
    "apply_in_place",
    "decide",
    "default_settings",
    "effective_policy",
    "invalid_outcome",
    "process_value",
    "replay",
]
