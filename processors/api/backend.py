"""What the HTTP routes need from a worker: one small protocol, no faust, no Kafka.

The worker implements `ThreadBackend` over its table, its store and its producer; the tests
implement it in memory. The routes never touch anything else of the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

StreamEvent: TypeAlias = Literal["store", "outcome", "interaction"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who serves a thread now.

    `local`: this worker owns the thread's partition. Otherwise `url` is the owner's advertised
    base URL (`Settings.advertised_url`), or None when nobody owns it. `ready` is False while the
    partition has no ready owner (starting, rebalancing, restoring: `reason` says which); the
    routes then answer 503 with Retry-After.
    """

    local: bool
    url: str | None = None
    ready: bool = True
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """Where an input record was produced."""

    event_id: str
    thread_id: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One server-sent event: `id` is opaque to the routes (the backend makes and reads it)."""

    id: str
    event: StreamEvent
    data: dict[str, Any] = field(default_factory=dict)


class ThreadBackend(Protocol):
    """The worker's side of the thread API. Every read is served by the owner (`owner().local`)."""

    def owner(self, thread_id: str) -> Owner:
        """Who owns the thread's partition now (no I/O: from the current assignment)."""
        ...

    async def thread_state(self, thread_id: str) -> dict[str, Any] | None:
        """The state as `processors.client.thread_view.describe_state` gives it; None: unknown."""
        ...

    async def handled_offset(self, thread_id: str) -> int:
        """The next offset of the thread's input partition this worker has handled (-1: none).

        `GET /threads/{id}?min_offset=N` answers once this is > N: offset N is handled.
        """
        ...

    async def history(
        self, thread_id: str, *, limit: int, before_seq: int | None, include_rolled_back: bool
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to `limit` stored events with `seq` < `before_seq` (None: from the newest), newest
        first, and the `before_seq` of the next page (None: no older events)."""
        ...

    async def interaction(self, thread_id: str, interaction_id: str) -> dict[str, Any] | None:
        """One interaction as in `describe_state`'s `interactions` list; None: unknown."""
        ...

    async def submit(self, record: dict[str, Any]) -> Submitted:
        """Produce one input record, already checked and completed (thread_id, timestamp and
        event_id set) by the routes, keyed by its thread."""
        ...

    async def outcome(
        self, thread_id: str, event_id: str, partition: int, offset: int, timeout: float
    ) -> dict[str, Any] | None:
        """The outcome record of the input at (partition, offset), waiting up to `timeout` s;
        None on timeout. It must not miss an outcome written before this call began (between
        `submit` and `outcome`)."""
        ...

    def stream(
        self, thread_id: str, after: str | None, from_beginning: bool
    ) -> AsyncIterator[StreamMessage]:
        """The thread's store and outcome records as they are written, forever.

        `after`: the `id` of the last message a client got (Last-Event-ID): resume right after
        it, without gap or repeat; it wins over `from_beginning`. Otherwise from the thread's
        first record (`from_beginning`) or from now.
        """
        ...

    def readiness(self) -> tuple[bool, str | None]:
        """(True, None) when the worker holds its partitions, restored, and processes them; else
        (False, "starting" | "rebalancing" | "restoring" | ...)."""
        ...
