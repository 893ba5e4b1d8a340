"""What an executor should run, from the records of its partitions: no I/O, no clock.

The executor feeds every `interaction` record of its outcome partitions and every stored event
of its store partitions here, in partition order, and gets back what to do: start a turn, stop
one, hand one a steering message. The ledger also says how far each outcome partition may be
committed: never past the `active` record of a turn still running, so that after a crash or a
rebalance the next owner reads it again and re-runs the turn.

Catch-up: a partition newly assigned is read from its committed offset to the end it had at
assignment before anything starts. Only the interactions whose last record there is `active`
start then: an interaction that started and completed in that stretch is not re-run.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from processors.executor.messages import Message, message_of

# Remembered per partition: activations already run (a duplicate `active` record under
# at-least-once is the same activation again) and stored events waiting for their turn.
_DONE_KEPT: Final = 10_000
_WAITING_KEPT: Final = 1_000
# Stored events that steer: merged into a running interaction by the `merge` (steer) policy.
_STEERING_TYPES: Final = frozenset({"user_input", "external_event"})
STOPPING_STATES: Final = frozenset({"cancelled", "failed"})


@dataclass(frozen=True, slots=True)
class Activation:
    """One transition of an interaction to `active`: what one turn runs."""

    thread_id: str
    interaction_id: str
    cause: str  # the cause event id: one per activation
    event: dict[str, Any] | None
    partition: int
    offset: int  # of its `interaction` record on the outcome topic

    @property
    def key(self) -> tuple[str, str]:
        return self.interaction_id, self.cause

    @property
    def event_seq(self) -> int:
        """The seq of the event that activated it (0: none, a `resume` command)."""
        return int(self.event["seq"]) if self.event is not None else 0


@dataclass(frozen=True, slots=True)
class Start:
    activation: Activation
    steers: tuple[Message, ...] = ()  # merged before the turn started


@dataclass(frozen=True, slots=True)
class Stop:
    interaction_id: str
    state: str  # cancelled or failed


@dataclass(frozen=True, slots=True)
class Steer:
    interaction_id: str
    message: Message


Action = Start | Stop | Steer


@dataclass
class _Partition:
    catch_up_end: int | None  # None: live
    position: int
    candidates: dict[str, Activation] = field(default_factory=dict)  # catch-up: last is active
    running: dict[str, Activation] = field(default_factory=dict)
    done: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    waiting: OrderedDict[tuple[str, int], dict[str, Any]] = field(default_factory=OrderedDict)


class Ledger:
    def __init__(self) -> None:
        self._partitions: dict[int, _Partition] = {}

    # --- assignment -------------------------------------------------------------------------

    def assign(self, partition: int, position: int, end: int) -> list[Action]:
        """A partition newly ours, read from `position`; nothing starts before `end`."""
        self._partitions[partition] = _Partition(catch_up_end=end, position=position)
        return self.caught_up(partition, position)

    def revoke(self, partition: int) -> list[Activation]:
        """The partition is no longer ours: its running turns, to be left (not failed)."""
        book = self._partitions.pop(partition, None)
        return list(book.running.values()) if book is not None else []

    def caught_up(self, partition: int, position: int) -> list[Action]:
        """The outcome partition's read position: past its catch-up end, what was active starts."""
        book = self._partitions.get(partition)
        if book is None:
            return []
        book.position = max(book.position, position)
        if book.catch_up_end is None or book.position < book.catch_up_end:
            return []
        book.catch_up_end = None
        actions: list[Action] = [self._start(book, a) for a in book.candidates.values()]
        book.candidates.clear()
        return actions

    @property
    def partitions(self) -> list[int]:
        return list(self._partitions)

    @property
    def catching_up(self) -> list[int]:
        return [p for p, book in self._partitions.items() if book.catch_up_end is not None]

    # --- records ------------------------------------------------------------------------------

    def on_interaction(self, partition: int, offset: int, record: dict[str, Any]) -> list[Action]:
        book = self._partitions.get(partition)
        if book is None:
            return []
        book.position = max(book.position, offset + 1)
        iid, state = str(record["interaction_id"]), record["state"]
        if state == "active":
            activation = Activation(
                str(record["thread_id"]),
                iid,
                str(record["cause_event_id"]),
                record.get("event"),
                partition,
                offset,
            )
            if activation.key in book.done or _same(book.running.get(iid), activation):
                return []  # a duplicate record: that activation ran or runs
            if book.catch_up_end is not None:
                book.candidates[iid] = activation
                return []
            return [self._start(book, activation)]
        book.candidates.pop(iid, None)
        if state in STOPPING_STATES:
            self._forget_waiting(book, iid)
            if iid in book.running:
                return [Stop(iid, state)]
        return []

    def on_store(self, partition: int, record: dict[str, Any]) -> list[Action]:
        """A stored event: a steering message for a running turn, or kept until its turn starts."""
        book = self._partitions.get(partition)
        iid = record.get("interaction_id")
        if book is None or not isinstance(iid, str) or record.get("type") not in _STEERING_TYPES:
            return []
        running = book.running.get(iid)
        if running is not None:
            if int(record["seq"]) > running.event_seq:
                return [Steer(iid, message_of(record))]
            return []
        book.waiting[(iid, int(record["seq"]))] = record
        while len(book.waiting) > _WAITING_KEPT:
            book.waiting.popitem(last=False)
        return []

    def finished(self, activation: Activation) -> None:
        """Its turn ended (returned, raised or was stopped): commits may pass its record."""
        book = self._partitions.get(activation.partition)
        if book is None:
            return
        # The very object: a turn left at a rebalance may end after the partition came back.
        if book.running.get(activation.interaction_id) is activation:
            del book.running[activation.interaction_id]
        book.done[activation.key] = None
        while len(book.done) > _DONE_KEPT:
            book.done.popitem(last=False)

    def commit_offset(self, partition: int) -> int | None:
        """How far the outcome partition may be committed (None: not ours)."""
        book = self._partitions.get(partition)
        if book is None:
            return None
        held = [a.offset for a in book.running.values()]
        held += [a.offset for a in book.candidates.values()]
        return min([book.position, *held])

    # --- mechanics ----------------------------------------------------------------------------

    def _start(self, book: _Partition, activation: Activation) -> Start:
        iid = activation.interaction_id
        book.running[iid] = activation
        steers = [
            message_of(record)
            for (waiting_iid, seq), record in book.waiting.items()
            if waiting_iid == iid and seq > activation.event_seq
        ]
        self._forget_waiting(book, iid)
        return Start(activation, tuple(steers))

    @staticmethod
    def _forget_waiting(book: _Partition, iid: str) -> None:
        for key in [k for k in book.waiting if k[0] == iid]:
            del book.waiting[key]


def _same(running: Activation | None, activation: Activation) -> bool:
    return running is not None and running.key == activation.key
