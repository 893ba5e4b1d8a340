"""The thread log's two paths, without a broker: the worker's own outputs shown as they become
visible (`show`), and the consumer reading what they do not cover (the partition up to its end
when assigned, another writer's records, a transaction's marker). Whatever the order, the index
must be the one a consumer reading the whole topic would build."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from processors.worker.thread_log import ThreadLog

SETTINGS = Settings(events_topic="t.events", store_topic="t.store", outcomes_topic="t.outcomes")
STORE = TopicPartition(SETTINGS.store_topic, 0)
THREAD = "t-1"


@dataclass(frozen=True)
class Message:
    offset: int
    key: bytes
    value: bytes


@dataclass
class Log:
    """One store partition as a read_committed consumer sees it: visible records by offset, and
    its end (the last stable offset); offsets in between are markers or aborted records."""

    records: dict[int, Message] = field(default_factory=dict)
    end: int = 0

    def append(self, count: int, *, visible: bool = True) -> list[Message]:
        added = [stored(self.end + n) for n in range(count)]
        if visible:
            self.records.update((m.offset, m) for m in added)
        self.end += count
        return added


def stored(offset: int) -> Message:
    record = {"type": "user_input", "thread_id": THREAD, "seq": offset, "payload": {"n": offset}}
    return Message(offset, THREAD.encode(), json.dumps(record).encode())


class LogConsumer:
    """What the tail uses of aiokafka's consumer, over one `Log`, `chunk` records per fetch."""

    def __init__(self, log: Log, chunk: int = 3) -> None:
        self.log, self.chunk = log, chunk
        self.position_of: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.fetched = 0  # records handed out

    def assign(self, tps: list[TopicPartition]) -> None:
        self.position_of = dict.fromkeys(tps, 0)
        self.paused = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.position_of)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.log.end if tp == STORE else 0 for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_of[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.position_of[tp]

    def last_stable_offset(self, tp: TopicPartition) -> int:
        return self.log.end if tp == STORE else 0

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)

    async def getmany(self, **_: object) -> dict[TopicPartition, list[Message]]:
        if STORE not in self.position_of or STORE in self.paused:
            return {}
        start = self.position_of[STORE]
        found = [self.log.records[o] for o in range(start, self.log.end) if o in self.log.records]
        batch = found[: self.chunk]
        self.position_of[STORE] = batch[-1].offset + 1 if len(found) > self.chunk else self.log.end
        self.fetched += len(batch)
        return {STORE: batch} if batch else {}


@pytest.fixture
def thread_log(tmp_path: Path) -> Iterator[ThreadLog]:
    log = ThreadLog(SETTINGS.model_copy(update={"data_dir": tmp_path}))
    yield log
    log.db.close()


def kept(messages: list[Message]) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    return [(m.key, m.value, json.loads(m.value)) for m in messages]


def history(thread_log: ThreadLog) -> list[int]:
    events, _ = thread_log.history(THREAD, limit=1000, before_seq=None, include_rolled_back=True)
    return [e["seq"] for e in reversed(events)]


async def following(thread_log: ThreadLog, log: Log) -> LogConsumer:
    consumer = LogConsumer(log)
    thread_log._consumer = consumer  # type: ignore[assignment]
    thread_log.assign({0})
    while not thread_log.ready(0) or STORE not in consumer.paused:
        await thread_log._follow(consumer)  # type: ignore[arg-type]
    return consumer


async def test_own_batches_that_follow_each_other_are_indexed_without_a_read(
    thread_log: ThreadLog,
) -> None:
    log = Log()
    log.append(4)
    consumer = await following(thread_log, log)
    read_before = consumer.fetched
    for _ in range(3):
        batch = log.append(5)
        thread_log.show(STORE.topic, 0, batch[0].offset, kept(batch), False)
    await thread_log._follow(consumer)  # type: ignore[arg-type]
    assert history(thread_log) == list(range(19))
    assert consumer.fetched == read_before and STORE in consumer.paused


async def test_records_between_own_batches_are_read_from_the_topic(
    thread_log: ThreadLog,
) -> None:
    log = Log()
    consumer = await following(thread_log, log)
    log.append(2)  # another writer's, or an at-least-once zombie's
    batch = log.append(3)
    thread_log.show(STORE.topic, 0, batch[0].offset, kept(batch), False)
    assert history(thread_log) == []  # not shown past a gap
    assert STORE not in consumer.paused
    await thread_log._follow(consumer)  # type: ignore[arg-type]
    await thread_log._follow(consumer)  # type: ignore[arg-type]
    assert history(thread_log) == [0, 1, 2, 3, 4]


async def test_a_commit_marker_between_two_transactions_is_no_gap(
    thread_log: ThreadLog,
) -> None:
    log = Log()
    consumer = await following(thread_log, log)
    read_before = consumer.fetched
    for _ in range(3):
        batch = log.append(2)
        log.append(1, visible=False)  # the transaction's commit marker
        thread_log.show(STORE.topic, 0, batch[0].offset, kept(batch), True)
    assert history(thread_log) == [0, 1, 3, 4, 6, 7]
    assert consumer.fetched == read_before and STORE in consumer.paused


async def test_a_partition_not_yet_followed_is_left_to_the_consumer(
    thread_log: ThreadLog,
) -> None:
    log = Log()
    batch = log.append(2)
    thread_log.assign({0})  # pending: its end not looked at yet
    thread_log.show(STORE.topic, 0, 0, kept(batch), False)
    assert history(thread_log) == []
    await following(thread_log, log)
    assert history(thread_log) == [0, 1]


# One step of a partition's life. ("own", n, fate): the worker's batch of n records, "shown" to
# the thread log once visible, "lost" (visible, but the worker never learnt its offset, or its
# transaction committed while the commit call failed) or "aborted" (under exactly-once: never
# visible). ("other", n): another writer's records (at-least-once only: under exactly-once a
# zombie is fenced). ("read",): a round of the tail. ("recheck",): its timer for paused
# partitions is due. Under exactly-once each transaction ends with a marker no consumer sees.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("own"), st.integers(1, 4), st.sampled_from(["shown", "lost", "aborted"])),
        st.tuples(st.just("other"), st.integers(1, 3)),
        st.tuples(st.just("read")),
        st.tuples(st.just("recheck")),
    ),
    max_size=30,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=st.integers(0, 6), steps=steps, transactional=st.booleans())
def test_whatever_the_order_the_index_is_what_the_topic_holds(
    tmp_path_factory: pytest.TempPathFactory,
    before: int,
    steps: list[tuple[Any, ...]],
    transactional: bool,
) -> None:
    async def run(thread_log: ThreadLog) -> None:
        log = Log()
        log.append(before)
        consumer = await following(thread_log, log)
        for step in steps:
            if step[0] == "own":
                fate = step[2] if transactional or step[2] != "aborted" else "lost"
                batch = log.append(step[1], visible=fate != "aborted")
                if transactional:
                    log.append(1, visible=False)  # its commit or abort marker
                if fate == "shown":
                    thread_log.show(STORE.topic, 0, batch[0].offset, kept(batch), transactional)
            elif step[0] == "other":
                if not transactional:
                    log.append(step[1])
            elif step[0] == "read":
                await thread_log._follow(consumer)  # type: ignore[arg-type]
            else:
                thread_log._recheck_at = 0.0
        for _ in range(200):  # the tail catches up, however far behind
            thread_log._recheck_at = 0.0
            await thread_log._follow(consumer)  # type: ignore[arg-type]
        assert history(thread_log) == sorted(log.records)

    thread_log = ThreadLog(
        SETTINGS.model_copy(update={"data_dir": tmp_path_factory.mktemp("thread-log")})
    )
    try:
        asyncio.run(run(thread_log))
    finally:
        thread_log.db.close()
