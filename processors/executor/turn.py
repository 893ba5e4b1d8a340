"""One activation of an interaction, as the executor's function sees it.

Every record a turn produces has an event id derived from (interaction, activation, step), so a
turn re-run after an executor crash produces the same ids: what the first attempt stored is
answered `duplicate`, not stored twice. Heartbeats carry no id: the worker derives one from
their offset, and they stay out of the thread's dedupe window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from processors.executor.ledger import Activation
from processors.executor.messages import Message, event_text

# Produces one input record for the thread (the executor's producer); returns once it is written.
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


class TurnOver(RuntimeError):
    """The turn has already completed, failed or started waiting, or it was stopped."""


class Turn:
    """What the function gets: the event, its text, the history, steering, and the replies."""

    def __init__(
        self, activation: Activation, history: list[Message], send: Send, now: Callable[[], str]
    ) -> None:
        self.activation_record = activation
        self.thread_id = activation.thread_id
        self.interaction_id = activation.interaction_id
        self.activation = activation.cause
        self.event = activation.event
        self.text = event_text(activation.event) if activation.event is not None else ""
        self.history = history
        self._send = send
        self._now = now
        self._step = 0
        self._steers: list[Message] = []
        self._seen: set[int] = set()
        self._arrived = asyncio.Event()
        self.settled = False  # it completed, failed or waits: nothing more to do
        self.stopped = False  # cancelled, failed by another, or left at shutdown

    # --- steering -------------------------------------------------------------------------

    def steers(self) -> list[Message]:
        """Messages merged into this interaction since the last call, oldest first."""
        taken, self._steers = self._steers, []
        self._arrived.clear()
        return taken

    async def next_steer(self, timeout: float | None = None) -> Message | None:
        """Wait for the next steering message (None after `timeout` seconds)."""
        if not self._steers:
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return None
        message = self._steers.pop(0)
        if not self._steers:
            self._arrived.clear()
        return message

    def deliver(self, message: Message) -> None:
        """The executor hands a merged message over (each seq once, whatever its source)."""
        if self.settled or self.stopped or message.seq in self._seen:
            return
        self._seen.add(message.seq)
        self._steers.append(message)
        self._arrived.set()

    # --- events -------------------------------------------------------------------------------

    async def say(self, text: str) -> None:
        """An `assistant_output` whose payload is `{"content": text}`."""
        await self.output({"content": text})

    async def output(self, payload: Any) -> None:
        await self._event("assistant_output", payload=payload)

    async def artifact(self, reference_id: str, payload: Any = None) -> None:
        await self._event("artifact", reference_id=reference_id, payload=payload)

    async def trace(self, payload: Any, level: str = "info") -> None:
        await self._event("system_trace", level=level, payload=payload)

    # --- commands -----------------------------------------------------------------------------

    async def wait_user(self, timeout: float | None = None) -> None:
        await self._command("wait_user", settles=True, timeout=timeout)

    async def wait_event(self, kind: str | None = None, timeout: float | None = None) -> None:
        await self._command("wait_event", settles=True, kind=kind, timeout=timeout)

    async def complete(self) -> None:
        await self._command("complete", settles=True)

    async def fail(self, reason: str) -> None:
        await self._command("fail", settles=True, reason=reason[:1000])

    async def add_task(self, task_id: str) -> None:
        await self._command("add_task", settles=False, task_id=task_id)

    async def heartbeat(self) -> None:
        """Sent for the turn while it runs (see ORCHESTRAL_HEARTBEAT_INTERVAL)."""
        if not (self.settled or self.stopped):
            record = self._base("command", command="heartbeat", interaction_id=self.interaction_id)
            await self._send(record)

    # --- mechanics ----------------------------------------------------------------------------

    async def _event(self, type_: str, **fields: Any) -> None:
        record = self._base(type_, interaction_id=self.interaction_id, **fields)
        await self._produce(record)

    async def _command(self, name: str, *, settles: bool, **fields: Any) -> None:
        options = {k: v for k, v in fields.items() if v is not None}
        record = self._base("command", command=name, interaction_id=self.interaction_id, **options)
        await self._produce(record)
        self.settled = self.settled or settles

    def _base(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, "thread_id": self.thread_id, **fields, "timestamp": self._now()}

    async def _produce(self, record: dict[str, Any]) -> None:
        if self.stopped:
            raise asyncio.CancelledError  # its `cancelled`/`failed` record came: nothing more
        if self.settled:
            raise TurnOver(f"interaction {self.interaction_id}: this turn is over")
        self._step += 1
        record["event_id"] = step_event_id(self.interaction_id, self.activation, self._step)
        await self._send(record)


def step_event_id(interaction_id: str, activation: str, step: int) -> str:
    """The same (interaction, activation, step) gives the same id on any executor."""
    return f"exec:{interaction_id}:{activation}:{step}"
