"""The executor process: a consumer group over the output topics, one task per turn.

Partition p of the outcome topic and partition p of the store topic hold the same threads (both
are keyed by thread id with the events topic's partition count), and the range assignor gives
them to the same member: a thread's work runs on one executor at a time, steering included.

Offsets are committed by hand, never past the `active` record of a turn still running (see
`Ledger.commit_offset`). Killed mid-turn, an executor's partitions go to another, which reads
that record again and re-runs the turn; its derived event ids make what the first attempt
stored `duplicate`. Stopped cleanly (SIGTERM), it cancels its running turns without failing
them and leaves the group: the next owner re-runs them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from config.settings import Settings
from processors.client.client import Client, now_rfc3339
from processors.client.thread_api import ThreadApiClient
from processors.executor.ledger import Activation, Ledger, Start, Steer, Stop
from processors.executor.messages import Message, message_of
from processors.executor.turn import Turn
from processors.kafka.connection import kafka_kwargs, start_client
from schemas.codec import output_decoder
from schemas.errors import DecodeError

log = logging.getLogger("orchestral.executor")

Handler = Callable[[Turn], Awaitable[None]]

_POLL_MS: Final = 200  # also the longest a `cancelled` record waits to be read
_COMMIT_EVERY: Final = 1.0
_HISTORY_WAIT: Final = 1.0  # how long a turn waits for the thread API to show its history


class Executor:
    """Runs `handler` once per activation of the interactions of its partitions."""

    def __init__(self, handler: Handler, settings: Settings) -> None:
        self.handler = handler
        self.settings = settings
        self.ledger = Ledger()
        self.turns: dict[str, Turn] = {}  # the newest turn per interaction
        self.tasks: dict[Turn, asyncio.Task[None]] = {}
        self.client = Client(settings)
        self.decoder = output_decoder()
        self.consumer: AIOKafkaConsumer | None = None
        self.api: ThreadApiClient | None = None
        self._stopping = asyncio.Event()
        self._api_warned = False

    # --- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Leave at the next poll: running turns are cancelled, not failed (re-run elsewhere)."""
        self._stopping.set()

    async def run(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            **kafka_kwargs(settings),
            group_id=settings.executor_group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # an interaction started before any executor ran
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(settings.session_timeout * 1000) // 3),
        )
        self.consumer = consumer
        consumer.subscribe(
            [settings.outcomes_topic, settings.store_topic], listener=_Rebalance(self)
        )
        await start_client(consumer, settings)
        self.api = ThreadApiClient(settings, timeout=5.0)
        log.info("executor in group %s: waiting for partitions", settings.executor_group)
        try:
            await self._loop(consumer)
        finally:
            await self._leave(consumer)

    async def _loop(self, consumer: AIOKafkaConsumer) -> None:
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=500)
            for tp, messages in batch.items():
                for message in messages:
                    self._on_message(tp, message)
            await self._catch_up(consumer)
            if time.monotonic() - last_commit >= _COMMIT_EVERY:
                await self.commit()
                last_commit = time.monotonic()

    async def _leave(self, consumer: AIOKafkaConsumer) -> None:
        await self.commit()
        for partition in self.ledger.partitions:
            self.ledger.revoke(partition)
        await self._leave_turns([t.activation_record for t in self.tasks])
        await consumer.stop()
        await self.client.__aexit__()
        if self.api is not None:
            await self.api.__aexit__()
        log.info("executor stopped")

    # --- records ------------------------------------------------------------------------------

    def _on_message(self, tp: TopicPartition, message: Any) -> None:
        try:
            record = self.decoder.decode_value(message.value)
        except DecodeError as exc:  # the worker writes only valid records; say so and go on
            log.warning("skipped %s:%d:%d: %s", tp.topic, tp.partition, message.offset, exc)
            return
        if not isinstance(record, dict):
            return
        if tp.topic == self.settings.outcomes_topic:
            if record.get("type") == "interaction":
                self._act(self.ledger.on_interaction(tp.partition, message.offset, record))
        elif tp.topic == self.settings.store_topic:
            self._act(self.ledger.on_store(tp.partition, record))

    async def _catch_up(self, consumer: AIOKafkaConsumer) -> None:
        # The consumer's position, not the last record's offset: under exactly-once the end
        # may be a transaction marker, which no record has.
        for partition in self.ledger.catching_up:
            tp = TopicPartition(self.settings.outcomes_topic, partition)
            if tp in consumer.assignment():
                self._act(self.ledger.caught_up(partition, await consumer.position(tp)))

    def _act(self, actions: list[Start | Stop | Steer]) -> None:
        for action in actions:
            if isinstance(action, Start):
                self._start(action)
            elif isinstance(action, Stop):
                self._stop_turns(action.interaction_id, action.state)
            else:
                turn = self.turns.get(action.interaction_id)
                if turn is not None:
                    turn.deliver(action.message)

    # --- turns --------------------------------------------------------------------------------

    def _start(self, start: Start) -> None:
        activation = start.activation
        turn = Turn(activation, [], self._send, now_rfc3339)
        for message in start.steers:
            turn.deliver(message)
        self.turns[activation.interaction_id] = turn
        self.tasks[turn] = asyncio.ensure_future(self._run_turn(turn))
        log.info(
            "turn started: thread %s interaction %s (activation %s)",
            activation.thread_id,
            activation.interaction_id,
            activation.cause,
        )

    def _stop_turns(self, interaction_id: str, state: str) -> None:
        """Its `cancelled` or `failed` record: the task is cancelled now, nothing more is sent."""
        for turn, task in list(self.tasks.items()):
            if turn.interaction_id == interaction_id and not task.done():
                turn.stopped = True
                task.cancel()
                log.info("turn stopped: interaction %s is %s", interaction_id, state)

    async def _run_turn(self, turn: Turn) -> None:
        beats = asyncio.ensure_future(self._heartbeats(turn))
        try:
            await self._load_history(turn)
            await self.handler(turn)
            if not (turn.settled or turn.stopped):
                await turn.complete()
        except asyncio.CancelledError:
            pass  # stopped, or left at shutdown: nothing more to say
        except Exception as exc:  # the function failed: so does its interaction
            await self._fail(turn, exc)
        finally:
            beats.cancel()
            self.tasks.pop(turn, None)
            if self.turns.get(turn.interaction_id) is turn:
                del self.turns[turn.interaction_id]
            self.ledger.finished(turn.activation_record)

    async def _fail(self, turn: Turn, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("turn failed: interaction %s: %s", turn.interaction_id, reason, exc_info=exc)
        if turn.settled or turn.stopped:
            return
        try:
            await turn.fail(reason)
        except Exception as again:  # the broker is away: the interaction's deadlines remain
            log.error("could not fail interaction %s: %s", turn.interaction_id, again)

    async def _heartbeats(self, turn: Turn) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                await turn.heartbeat()
            except Exception as exc:  # a missed heartbeat is not the turn's failure
                log.warning("heartbeat of %s not sent: %s", turn.interaction_id, exc)

    async def _load_history(self, turn: Turn) -> None:
        """The thread's recent events before the turn's own, and steers it may have missed.

        Best effort: without the thread API (or while the thread's partition moves) the turn
        runs with no history rather than not at all.
        """
        limit = self.settings.executor_history
        if self.api is None or limit == 0:
            return
        wanted = turn.activation_record.event_seq - 1
        deadline = time.monotonic() + _HISTORY_WAIT
        problem: Exception | None = None
        while True:
            try:
                # A little more than `limit`: events merged after the turn's own come first.
                events = await self.api.history(turn.thread_id, limit + 20)
            except Exception as exc:  # unreachable, 503 while the partition moves, ...
                events, problem = [], exc
            else:
                problem = None
            seen = max((int(e["seq"]) for e in events), default=0)
            if (problem is None and seen >= wanted) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # the owner's thread log is a moment behind the topic
        if problem is not None:
            self._warn_api(problem)
        _fill(turn, [message_of(e) for e in reversed(events)], limit)

    def _warn_api(self, exc: Exception) -> None:
        if not self._api_warned:
            log.warning("turns get no history: %s", exc)
            self._api_warned = True

    async def _send(self, record: Mapping[str, Any]) -> None:
        await self.client.produce(record, new_event_id=False)

    async def _leave_turns(self, activations: list[Activation]) -> None:
        keys = {a.key for a in activations}
        leaving = [(t, task) for t, task in self.tasks.items() if t.activation_record.key in keys]
        for turn, task in leaving:
            turn.stopped = True
            task.cancel()
        if leaving:
            await asyncio.wait([task for _, task in leaving], timeout=5.0)
            log.info("left %d running turn(s) to be re-run by the next owner", len(leaving))

    # --- offsets ------------------------------------------------------------------------------

    async def commit(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        offsets: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            if tp.topic == self.settings.outcomes_topic:
                offset = self.ledger.commit_offset(tp.partition)
            else:
                offset = await consumer.position(tp)
            if offset is not None:
                offsets[tp] = offset
        if offsets:
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # a rebalance under way: the next commit catches up
                log.warning("offset commit deferred: %s", exc)


def _fill(turn: Turn, messages: list[Message], limit: int) -> None:
    """History: what came before the turn's event; after it, of its interaction: steers."""
    seq = turn.activation_record.event_seq
    before = [m for m in messages if m.seq < seq] if seq else messages
    turn.history[:] = before[-limit:]
    for message in messages:
        if (
            seq
            and message.seq > seq
            and message.event.get("interaction_id") == turn.interaction_id
            and message.type in ("user_input", "external_event")
        ):
            turn.deliver(message)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Turns stop before their partitions go; a partition arriving is caught up first."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        executor = self.executor
        await executor.commit()
        outcomes = executor.settings.outcomes_topic
        for tp in revoked:
            if tp.topic == outcomes:
                await executor._leave_turns(executor.ledger.revoke(tp.partition))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        executor = self.executor
        consumer = executor.consumer
        assert consumer is not None
        mine = [tp for tp in assigned if tp.topic == executor.settings.outcomes_topic]
        if not mine:
            return
        # Asked, not `position()`: positions are set only after this callback returns.
        ends = await consumer.end_offsets(mine)
        starts = await consumer.beginning_offsets(mine)
        for tp in mine:
            committed = await consumer.committed(tp)
            position = starts[tp] if committed is None else max(committed, starts[tp])
            executor._act(executor.ledger.assign(tp.partition, position, ends[tp]))
        log.info("executor holds partitions %s", sorted(tp.partition for tp in mine))


def install_signal_handlers(executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, executor.stop)
