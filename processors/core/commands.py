"""How a command changes a thread: the command half of the runtime's step (runtime.py).

`CommandSteps` is mixed into `runtime._Step`, which provides the state, the clock of the record
and the output writers declared below.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final

from processors.core import ids
from processors.core.deadlines import holds as deadline_holds
from processors.core.limits import Limits
from processors.core.outputs import LIFECYCLE_CATEGORY, THREAD_DELETED, THREAD_EXPIRED, thread_trace
from processors.core.state import Interaction, ThreadState
from schemas.records import Command

# Command -> the state it moves the interaction to.
TRANSITIONS: Final[dict[str, str]] = {
    "complete": "completed",
    "fail": "failed",
    "cancel": "cancelled",
    "wait_user": "waiting_user",
    "wait_event": "waiting_event",
    "pause": "paused",
    "resume": "active",
}


class CommandSteps:
    if not TYPE_CHECKING:
        __slots__ = ()  # the step is a slotted dataclass; its fields are declared below for mypy
    state: ThreadState
    limits: Limits
    event_id: str
    touches: bool
    timestamp: str

    if TYPE_CHECKING:  # provided by runtime._Step

        @property
        def auto_cleanup(self) -> bool: ...
        def outcome(
            self,
            status: str,
            interaction_id: str | None,
            reason: str | None = None,
            *,
            queue_position: int | None = None,
        ) -> None: ...
        def store(
            self, event: dict[str, Any], interaction_id: str | None, *, event_id: str | None = None
        ) -> dict[str, Any]: ...
        def transition(
            self,
            interaction: Interaction,
            new_state: str,
            *,
            rolled_back: bool = False,
            reason: str | None = None,
        ) -> None: ...
        def cancel_nonterminal(self, *, rolled_back: bool) -> None: ...
        def purge_terminal(self) -> None: ...
        def show_life(self, interaction: Interaction) -> None: ...

    def on_command(self, command: Command) -> None:
        name = command.command
        if name == "configure":
            self.configure(command)
        elif name == "cancel_all":
            self.cancel_nonterminal(rolled_back=False)
            if self.auto_cleanup:
                self.purge_terminal()
            self.outcome("applied", command.interaction_id)
        elif name == "expire":
            self.expire(command)
        elif name == "delete_thread":
            self.cancel_nonterminal(rolled_back=False)
            self.forget_thread(THREAD_DELETED)
            self.outcome("applied", None)
        else:
            self.on_interaction_command(command)

    def configure(self, command: Command) -> None:
        state = self.state
        if command.policy is not None:
            state.policy = command.policy
        if command.max_interactions_per_thread is not None:
            state.max_interactions = command.max_interactions_per_thread
        if command.auto_cleanup is not None:
            state.auto_cleanup = command.auto_cleanup
        for name in ("run_timeout", "idle_timeout", "wait_timeout", "thread_ttl"):
            value = getattr(command, name)
            if value is not None:
                setattr(state, name, value)
        self.outcome("applied", command.interaction_id)

    def expire(self, command: Command) -> None:
        """A deadline the worker's timer saw pass: applied only if it still holds.

        Stale (`deadlines.holds` is false), it changes nothing, not even the thread's clock:
        the timer's own records are no sign of life. Outcome `applied` either way.
        """
        iid, reason = command.interaction_id, command.reason or ""
        holds = deadline_holds(
            self.state, self.limits, iid, reason, command.deadline or "", self.timestamp
        )
        self.touches = False
        if holds and iid is None:
            self.forget_thread(THREAD_EXPIRED)
        elif holds and iid is not None:
            self.touches = True
            self.transition(self.state.interactions[iid], "failed", reason=reason)
        self.outcome("applied", iid)

    def forget_thread(self, event_type: str) -> None:
        """Shrink the thread to what keeps `seq` gap-free, and store the mark that says so.

        Kept: the id, `seq`, and the replay anchor (position, epoch, replay buffer), which
        `remember` needs to repeat this very record's outputs after a crash. Gone: its
        interactions, queue, configuration and dedupe window. `updated_at` None: nothing is
        left to expire; the thread's next record starts it again, continuing `seq`.
        """
        state = self.state
        payload = {"category": LIFECYCLE_CATEGORY, "event_type": event_type, "interaction_id": None}
        self.store(
            thread_trace(state.thread_id, payload, self.timestamp),
            None,
            event_id=ids.lifecycle_mark_id(event_type, self.event_id),
        )
        forgotten = ThreadState(state.thread_id, seq=state.seq)
        for name in ("partition", "offset", "recent", "epoch"):
            setattr(forgotten, name, getattr(state, name))
        for f in fields(ThreadState):
            setattr(state, f.name, getattr(forgotten, f.name))
        self.touches = False

    def on_interaction_command(self, command: Command) -> None:
        iid = command.interaction_id or ""  # schema validation guarantees it is set
        interaction = self.state.interactions.get(iid)
        if interaction is None:
            self.outcome("rejected", iid, f"Interaction not found: {iid}")
            return
        if command.command == "add_task":
            interaction.task_ids.append(command.task_id or "")
            self.show_life(interaction)
        elif interaction.terminal:
            # A deliberate fix: the seed let terminal interactions flip back (but not resume).
            self.outcome("rejected", iid, _terminal_reason(iid, command.command))
            return
        else:
            self.show_life(interaction)
            if command.command == "wait_event":
                interaction.wait_kind = command.kind
            if command.command in ("wait_user", "wait_event"):
                interaction.wait_timeout = command.timeout
            if command.command != "heartbeat":  # a heartbeat stores nothing, records nothing
                # `fail` may say why (an executor's error): its `failed` record carries it.
                reason = command.reason if command.command == "fail" else None
                self.transition(interaction, TRANSITIONS[command.command], reason=reason)
        self.outcome("applied", iid)


def _terminal_reason(interaction_id: str, command: str) -> str:
    """`resume` keeps the seed's own words (`resume_interaction`); the others the contract's."""
    if command == "resume":
        return f"interaction '{interaction_id}' is terminal and cannot be resumed"
    return f"interaction '{interaction_id}' is terminal"
