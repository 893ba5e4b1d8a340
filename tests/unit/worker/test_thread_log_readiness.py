"""The thread log's readiness rule, without a broker: a partition is ready (its reads answered
locally) only once the tail has looked at where it ends and read up to there. Otherwise a worker
that has just been given a partition answers its threads' history with nothing (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.structs import TopicPartition

from config.settings import Settings
from processors.worker.thread_log import ThreadLog

SETTINGS = Settings(events_topic="t.events", store_topic="t.store", outcomes_topic="t.outcomes")


class FakeConsumer:
    """What the tail uses of aiokafka's consumer: positions move only by `seek` and `read_to`."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends
        self.positions: dict[TopicPartition, int] = {}
        self.ends_asked = asyncio.Event()
        self.answer_ends = asyncio.Event()
        self.answer_ends.set()

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.ends_asked.set()
        await self.answer_ends.wait()
        return {tp: self.ends.get(tp, 0) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def getmany(self, **_: object) -> dict[TopicPartition, list[object]]:
        return {}

    def read_to(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None  # never fetched: the tail does not pause it

    def pause(self, tp: TopicPartition) -> None:
        raise AssertionError("paused without a known end")


@pytest.fixture
def thread_log(tmp_path: Path) -> Iterator[ThreadLog]:
    log = ThreadLog(SETTINGS.model_copy(update={"data_dir": tmp_path}))
    yield log
    log.db.close()


def store(partition: int) -> TopicPartition:
    return TopicPartition(SETTINGS.store_topic, partition)


async def test_a_partition_just_assigned_is_not_ready_before_its_ends_are_looked_at(
    thread_log: ThreadLog,
) -> None:
    consumer = FakeConsumer({})
    thread_log.assign({0})
    assert not thread_log.ready(0)
    await thread_log._follow(consumer)
    assert thread_log.ready(0)  # empty partitions: nothing to read


async def test_a_partition_behind_its_end_is_ready_once_read_up_to_it(
    thread_log: ThreadLog,
) -> None:
    consumer = FakeConsumer({store(0): 3})
    thread_log.assign({0})
    await thread_log._follow(consumer)
    assert not thread_log.ready(0)
    consumer.read_to(store(0), 3)
    await thread_log._follow(consumer)
    assert thread_log.ready(0)


async def test_an_assignment_made_while_the_ends_are_asked_for_stays_pending(
    thread_log: ThreadLog,
) -> None:
    consumer = FakeConsumer({})
    consumer.answer_ends.clear()
    thread_log.assign({0})
    tail = asyncio.ensure_future(thread_log._follow(consumer))
    await consumer.ends_asked.wait()
    thread_log.assign({0, 1})  # a rebalance lands while the tail awaits the broker
    consumer.answer_ends.set()
    await tail
    assert thread_log.ready(0) and not thread_log.ready(1)
    await thread_log._follow(consumer)
    assert thread_log.ready(1)
