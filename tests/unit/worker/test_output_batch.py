"""processors/worker/output_batch.py: what is added is what the producer gets, per partition, in order."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.worker.output_batch import OutputBatch, Target

BATCH_SIZE = 2048  # small, so records of a few KiB fill builders and need new ones


class RecordingProducer:
    """aiokafka's producer surface OutputBatch uses: real builders, sends recorded."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bytes]] = []  # topic, partition, encoded batch

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(BATCH_SIZE, 0, is_transactional=False)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, bytes(builder._build())))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        return future


def read_back(producer: RecordingProducer) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    got: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for topic, partition, data in producer.sent:
        batch = MemoryRecords(data).next_batch()
        assert batch is not None
        for r in batch:
            got.setdefault((topic, partition), []).append((r.key, r.value, list(r.headers)))
    return got


records = st.lists(
    st.tuples(
        st.sampled_from(["store", "outcomes", "changelog"]),
        st.integers(0, 3),
        st.one_of(st.none(), st.binary(min_size=1, max_size=16)),
        # Sizes spread over several builders' worth, so builders fill up and roll over.
        st.one_of(st.none(), st.integers(0, 3 * BATCH_SIZE).map(lambda n: b"v" * n)),
        st.lists(st.tuples(st.sampled_from(["error", "source_offset"]), st.binary(max_size=8))),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(records)
def test_every_record_reaches_its_partition_in_the_order_added(
    added: list[tuple[str, int, bytes | None, bytes | None, list[tuple[str, bytes]]]],
) -> None:
    producer = RecordingProducer()

    def target_for(partition: int) -> Target:
        return producer, nullcontext()

    out = OutputBatch(target_for)
    for topic, partition, key, value, headers in added:
        out.add(topic, partition, key, value, headers)
    queued = asyncio.run(out.send())

    expected: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for topic, partition, key, value, headers in added:
        expected.setdefault((topic, partition), []).append((key, value, headers))
    assert read_back(producer) == expected
    # One entry per batch handed over, counting its records.
    assert sum(q.count for q in queued) == len(added)
    assert [(q.topic, q.partition) for q in queued] == [(t, p) for t, p, _ in producer.sent]


def test_a_record_larger_than_the_batch_size_goes_alone_in_its_own_batch() -> None:
    producer = RecordingProducer()
    out = OutputBatch(lambda partition: (producer, nullcontext()))
    out.add("store", 0, b"k", b"a")
    out.add("store", 0, b"k", b"b" * (5 * BATCH_SIZE))
    out.add("store", 0, b"k", b"c")
    asyncio.run(out.send())
    sizes = [len(list(MemoryRecords(d).next_batch() or [])) for _, _, d in producer.sent]
    assert sizes == [1, 1, 1]
    assert [v for _, v, _ in read_back(producer)[("store", 0)]] == [
        b"a",
        b"b" * (5 * BATCH_SIZE),
        b"c",
    ]


def test_nothing_added_sends_nothing() -> None:
    producer = RecordingProducer()
    out = OutputBatch(lambda partition: (producer, nullcontext()))
    assert asyncio.run(out.send()) == []
    assert producer.sent == []
