"""A faust stream's events in batches of whatever is ready, for the worker's agent.

Per input record the worker produces about four records (store, outcome, interaction, state
changelog); handing them to the producer one call at a time cost more than the thread runtime
itself. Handling the records of a batch together lets their outputs go out as one aiokafka batch
per topic-partition (processors/worker/output_batch.py) and their states be saved once per thread.

faust's `Stream.take_events(max, within)` waits up to `within` for a full batch (latency at low
load) and stops reading while a batch is handled. Here the stream is read in the background into
a buffer, and a batch is what the buffer holds when the agent asks for one: a single event at low
load (nothing added to latency), up to `max_size` under load. A full buffer stops the reading
until the agent takes it (back-pressure).

Events are not acked here: the agent acks an event once everything it produced is handed to the
producer. Events still buffered at a rebalance are the agent's to drop (`drop_if_stale`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust.types import AppT, EventT, StreamT

from processors.worker import faust_compat


async def ready_batches(stream: StreamT[Any], max_size: int) -> AsyncIterator[list[EventT[Any]]]:
    """Yield the events read so far, in order, at most `max_size` at a time."""
    buffer: list[EventT[Any]] = []
    ready = asyncio.Event()  # the buffer holds an event
    room = asyncio.Event()  # the buffer is not full
    room.set()
    live: Any = stream  # faust's stream internals below are not part of StreamT

    async def wait_for_room(value: Any) -> Any:
        await live.wait(room)  # also returns when the stream stops
        return value

    def collect(value: Any) -> Any:
        # A stream processor: runs for each event as the stream reads it (current_event set).
        event = live.current_event
        if event is None:
            raise RuntimeError("a stream processor ran without a current event")
        buffer.append(event)
        ready.set()
        if len(buffer) >= max_size:
            room.clear()
            return wait_for_room(value)  # faust awaits an awaitable a processor returns
        return value

    live.enable_acks = False  # the agent acks each event itself
    live.add_processor(collect)
    faust_compat.read_in_background(live)
    try:
        while not live.should_stop:
            await live.wait_for_stopped(ready)
            if not buffer:
                continue
            await _let_arrive(buffer, max_size)
            batch = buffer[:]
            buffer.clear()
            ready.clear()
            room.set()
            yield batch
    finally:
        faust_compat.remove_processor(live, collect)


async def _let_arrive(buffer: list[Any], max_size: int, quiet_rounds: int = 3) -> None:
    """Let the events already fetched reach the buffer: faust hands a fetched batch to the
    stream one event per event-loop round, so a batch taken at once would hold one event.
    Stops when the buffer is full or has not grown for `quiet_rounds` rounds (microseconds)."""
    quiet = 0
    while len(buffer) < max_size and quiet < quiet_rounds:
        size = len(buffer)
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(buffer) == size else 0


def drop_if_stale(app: AppT, event: EventT[Any]) -> bool:
    """True for an event read before a rebalance (or while the flow is stopped for one), after
    dropping it. faust's stream skips these itself; one that was buffered first must be skipped
    too, and not acked: the partition is sought back to its committed offset and reads it again.

    Dropping it also takes it off the consumer's set of in-flight messages: at a revocation
    faust waits for that set to empty (`wait_empty`), and the set is weak, but faust's stream
    keeps a reference to the last message it read while it waits for the next one, so a dropped
    last message would hold the rebalance until the group evicts the worker."""
    stale = (
        not app.flow_control.is_active()
        or event.message.generation_id != app.consumer_generation_id
    )
    if stale:
        app.consumer.unacked.discard(event.message)
    return stale
