"""The thread runtime: `(state, input record) -> (new state, output records)`, with no I/O.

One record of one thread at a time, in partition order:
1. **Replay.** A record at or before the thread's last applied offset was applied already (the
   worker crashed or rebalanced before committing it): its outputs are re-emitted from the
   state, identical, and nothing changes.
2. **Duplicate.** A producer-given `event_id` seen within the dedupe window at another position:
   outcome `duplicate`, nothing changes.
3. **Dispatch.** Commands change interactions; events resume a waiting interaction, append to
   one, or go to the thread's concurrency policy (`policy.decide`).
4. **Drain.** If the thread is now idle, the oldest queued event starts.
5. **Retention.** At most `terminal_retention` terminal interactions are kept.

Deadlines (`deadlines.py`) are data in the state: each non-terminal interaction keeps when it
entered its state and when its executor last showed life; the worker's timer turns a passed one
into an `expire` command, applied here like any input only while it still holds.

Ids are derived (`ids.py`), time comes from the input's `timestamp`: the same input always
yields the same output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from processors.core import ids
from processors.core.commands import CommandSteps
from processors.core.limits import Limits, Policy
from processors.core.outputs import (
    LIFECYCLE_CATEGORY,
    OUTCOMES,
    STORE,
    TURN_ROLLED_BACK,
    Output,
    Position,
    interaction_record,
    outcome_record,
    thread_trace,
)
from processors.core.policy import Action, decide, effective_policy
from processors.core.replay_rule import applied_before, remember
from processors.core.state import Interaction, QueuedEvent, ThreadState
from schemas.records import Command, Event

NULL_PAYLOAD_REASON: Final = "payload must not be null for user/external events"


def apply(
    state: ThreadState | None,
    record: Event | Command,
    position: Position,
    limits: Limits,
    *,
    committed_offset: int | None = None,
) -> tuple[ThreadState, list[Output]]:
    """Apply one record to a copy of `state` (None: a new thread); the input is left untouched."""
    new = ThreadState(record.thread_id) if state is None else state.copy()
    return new, apply_in_place(new, record, position, limits, committed_offset=committed_offset)


def apply_in_place(
    state: ThreadState,
    record: Event | Command,
    position: Position,
    limits: Limits,
    *,
    committed_offset: int | None = None,
) -> list[Output]:
    """`apply`, mutating `state`: for callers that own a freshly decoded state (the worker).

    `committed_offset`: every record of this partition before it is committed, so their outputs
    need not be kept for replay. None keeps up to `limits.replay_buffer` of them.
    """
    if applied_before(state, position):
        outputs = state.replay_outputs(position.offset)
        if outputs is not None:
            return outputs
        # Not a replay that can be repeated (see `replay_missing`): the record is taken as new,
        # and the buffer, whose offsets cannot be trusted either, is dropped.
        state.recent.clear()
    step = _Step(state, record, position, limits)
    step.run()
    remember(
        state,
        step.record,
        step.position,
        step.outputs,
        invalid=step.invalid,
        limits=limits,
        committed_offset=committed_offset,
    )
    return step.outputs


@dataclass(slots=True)
class _Step(CommandSteps):
    """The application of one record: reads the state, mutates it, collects outputs."""

    state: ThreadState
    record: Event | Command
    position: Position
    limits: Limits
    outputs: list[Output] = field(default_factory=list)
    event_id: str = ""
    invalid: bool = False
    # False: the record leaves the thread's clock (`updated_at`, the thread_ttl start) alone.
    touches: bool = True
    timestamp: str = ""  # the record's: the step's logical time (an attribute: read often)

    def __post_init__(self) -> None:
        pos = self.position
        self.event_id = self.record.event_id or ids.derived_event_id(
            pos.topic, pos.partition, pos.offset
        )
        self.timestamp = self.record.timestamp

    def run(self) -> None:
        record = self.record
        # Same position re-read is a replay (handled before); another position is a duplicate.
        if record.event_id is not None and record.event_id in self.state.seen:
            self.outcome("duplicate", record.interaction_id, f"Duplicate event_id: {self.event_id}")
            return
        if isinstance(record, Command):
            self.on_command(record)
        else:
            self.on_event(record)
        self.drain_queue()
        self.enforce_retention()
        if self.touches:
            self.state.updated_at = self.timestamp

    # --- events -------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if event.type in ("user_input", "external_event") and event.payload is None:
            self.outcome("invalid", event.interaction_id, NULL_PAYLOAD_REASON)
            self.invalid = True
            return
        waiting = self.resume_target(event)
        if waiting is not None:
            stored = self.store(event.store_fields(), waiting.id)
            self.transition(waiting, "active", event=stored)
            self.outcome("resumed", waiting.id)
            return
        if event.type in ("assistant_output", "artifact", "system_trace") and (
            event.interaction_id is not None or event.type == "system_trace"
        ):
            self.append(event)
            return
        self.on_new_turn(event)

    def resume_target(self, event: Event) -> Interaction | None:
        """The newest interaction waiting for this event: user input or an external kind."""
        if event.type == "user_input":
            wanted, kind = "waiting_user", None
        elif event.type == "external_event":
            wanted, kind = "waiting_event", event.kind
        else:
            return None
        for interaction in reversed(self.state.interactions.values()):
            if interaction.state == wanted and _kind_matches(interaction.wait_kind, kind):
                return interaction
        return None

    def append(self, event: Event) -> None:
        iid = event.interaction_id
        if iid is not None and iid not in self.state.interactions:
            self.outcome("rejected", iid, f"Interaction not found: {iid}")
            return
        if iid is not None:
            self.show_life(self.state.interactions[iid])  # its executor's output
        self.store(event.store_fields(), iid)
        self.outcome("appended", iid)

    def on_new_turn(self, event: Event) -> None:
        state = self.state
        iid = ids.interaction_id(state.thread_id, self.event_id)
        queued = state.queue and any(q.event_id == self.event_id for q in state.queue)
        if iid in state.interactions or queued:
            # The same event id, re-sent beyond the dedupe window while its interaction (or its
            # queued copy) is still known: starting it would reuse that interaction's id.
            self.outcome("duplicate", event.interaction_id, f"Duplicate event_id: {self.event_id}")
            return
        policy = effective_policy(event.concurrency, state.policy, self.limits)
        merge_into = self.merge_target(event) if policy.name == "merge" else None
        decision = decide(
            policy,
            nonterminal=len(state.nonterminal()),
            queue_len=len(state.queue),
            merge_target=merge_into is not None,
            expected_interaction=event.expected_interaction_id is not None,
        )
        action = decision.action
        if action is Action.MERGE and merge_into is not None:
            self.store(event.store_fields(), merge_into.id)
            self.outcome("merged", merge_into.id)
        elif action is Action.QUEUE:
            state.queue.append(QueuedEvent(self.event_id, event.store_fields()))
            self.outcome("queued", None, queue_position=len(state.queue))
        elif action is Action.REJECT:
            self.reject_stored(event.store_fields(), decision.reason or "rejected")
        else:
            if action in (Action.INTERRUPT, Action.ROLLBACK):
                self.cancel_nonterminal(rolled_back=action is Action.ROLLBACK)
            # The seed's MergeIntoRunning creates directly: the terminal ones stay known.
            purge = action is not Action.START_BESIDE
            self.start(
                event.store_fields(), self.event_id, policy, announce=True, iid=iid, purge=purge
            )

    def merge_target(self, event: Event) -> Interaction | None:
        interactions = self.state.interactions
        if event.expected_interaction_id is not None:
            expected = interactions.get(event.expected_interaction_id)
            return expected if expected is not None and expected.state == "active" else None
        for interaction in reversed(interactions.values()):
            if interaction.state == "active":
                return interaction
        return None

    def start(
        self,
        event: dict[str, Any],
        source_event_id: str,
        policy: Policy,
        *,
        announce: bool,
        iid: str | None = None,
        purge: bool = True,
    ) -> None:
        """Start a new interaction for `event` (announce=False: a queued event, no 2nd outcome).

        `purge`: auto_cleanup applies (the seed's interrupt path); never under `parallel`.
        """
        state = self.state
        if purge and self.auto_cleanup and policy.name != "parallel":
            self.purge_terminal()
        limit = state.max_interactions or self.limits.max_interactions_per_thread
        if len(state.nonterminal()) >= limit:
            self.reject_stored(event, f"Maximum active interactions ({limit}) reached")
            return
        iid = iid or ids.interaction_id(state.thread_id, source_event_id)
        ts = self.timestamp
        interaction = Interaction(iid, "active", ts, source_event_id, since=ts, alive=ts)
        state.interactions[iid] = interaction
        stored = self.store(event, iid, event_id=source_event_id)
        self.interaction_record(interaction, None, cause=source_event_id, event=stored)
        if announce:
            self.outcome("started", iid)

    def reject_stored(self, event: dict[str, Any], reason: str) -> None:
        """A rejected event is still stored, with the producer's own interaction id."""
        producer_iid = event["interaction_id"]
        self.store(event, producer_iid)
        self.outcome("rejected", producer_iid, reason)

    # --- shared mechanics ---------------------------------------------------------------------

    @property
    def auto_cleanup(self) -> bool:
        configured = self.state.auto_cleanup
        return self.limits.auto_cleanup if configured is None else configured

    def show_life(self, interaction: Interaction) -> None:
        """Its executor showed life (a heartbeat, an output, a command): idle_timeout restarts."""
        if not interaction.terminal:
            interaction.alive = self.timestamp

    def transition(
        self,
        interaction: Interaction,
        new_state: str,
        *,
        rolled_back: bool = False,
        reason: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> None:
        """`event`: the stored record that made it `active` (its executor needs no join)."""
        previous = interaction.state
        if previous == new_state:
            return  # no change, no record
        interaction.state = new_state
        interaction.rolled_back = interaction.rolled_back or rolled_back
        if interaction.terminal and interaction.ended_at is None:
            interaction.ended_at = self.timestamp
        if new_state != "waiting_event":
            interaction.wait_kind = None
        if new_state not in ("waiting_user", "waiting_event"):
            interaction.wait_timeout = None
        # A new state restarts its deadlines; a terminal one has none.
        since = None if interaction.terminal else self.timestamp
        interaction.since = interaction.alive = since
        self.interaction_record(
            interaction, previous, cause=self.event_id, reason=reason, event=event
        )

    def cancel_nonterminal(self, *, rolled_back: bool) -> None:
        for interaction in self.state.nonterminal():
            self.transition(interaction, "cancelled", rolled_back=rolled_back)
            if rolled_back:
                self.rollback_mark(interaction.id)

    def rollback_mark(self, interaction_id: str) -> None:
        """The store's durable `turn_rolled_back` mark: history reads the store alone."""
        payload = {
            "category": LIFECYCLE_CATEGORY,
            "event_type": TURN_ROLLED_BACK,
            "interaction_id": interaction_id,
        }
        self.store(
            thread_trace(self.state.thread_id, payload, self.timestamp),
            None,
            event_id=ids.rollback_mark_id(interaction_id, self.event_id),
        )

    def purge_terminal(self) -> None:
        interactions = self.state.interactions
        for iid in [i.id for i in interactions.values() if i.terminal]:
            del interactions[iid]

    def enforce_retention(self) -> None:
        interactions = self.state.interactions
        if len(interactions) <= self.limits.terminal_retention:
            return  # fewer interactions than the limit, so fewer terminal ones too
        terminal = [i.id for i in interactions.values() if i.terminal]
        for iid in terminal[: max(0, len(terminal) - self.limits.terminal_retention)]:
            del interactions[iid]

    def drain_queue(self) -> None:
        """When the thread is idle, its oldest queued event starts."""
        state = self.state
        if not state.queue or state.busy:
            return
        queued = state.queue.pop(0)
        policy = effective_policy(None, state.policy, self.limits)
        self.start(queued.event, queued.event_id, policy, announce=False)

    # --- output records -----------------------------------------------------------------------

    def store(
        self, event: dict[str, Any], interaction_id: str | None, *, event_id: str | None = None
    ) -> dict[str, Any]:
        """Append the store record and return it."""
        self.state.seq += 1
        record = dict(event)
        record["interaction_id"] = interaction_id
        record["seq"] = self.state.seq
        record["event_id"] = event_id or self.event_id
        self.outputs.append((STORE, record))
        return record

    def outcome(
        self,
        status: str,
        interaction_id: str | None,
        reason: str | None = None,
        *,
        queue_position: int | None = None,
    ) -> None:
        self.outputs.append(
            (
                OUTCOMES,
                outcome_record(
                    self.state.thread_id,
                    self.event_id,
                    status,
                    interaction_id,
                    reason,
                    queue_position,
                    self.timestamp,
                ),
            )
        )

    def interaction_record(
        self,
        interaction: Interaction,
        previous: str | None,
        *,
        cause: str,
        reason: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> None:
        record = interaction_record(
            self.state.thread_id,
            interaction.id,
            interaction.state,
            previous,
            cause,
            self.timestamp,
            interaction.rolled_back,
            reason,
            event,
        )
        self.outputs.append((OUTCOMES, record))


def _kind_matches(wait_kind: str | None, kind: str | None) -> bool:
    """A wait without a kind (or `*`) takes any external event; else kinds match, any case."""
    if wait_kind is None or wait_kind == "*":
        return True
    return kind is not None and wait_kind.casefold() == kind.casefold()
