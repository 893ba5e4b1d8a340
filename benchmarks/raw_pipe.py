"""The first baseline: the raw pipe, an aiokafka consumer + producer and nothing else.

It forwards every input record to an output topic on the same partition with the worker's
producer settings (acks=all, linger 5 ms) and commits every second, the worker's commit
interval; no decoding, no state, no policy. Its rate is the limit for a Python Kafka client on
this machine, and every other rate of the bench is reported as a ratio to it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.bench_run import BenchRun, Inputs, log, repeated
from devtools.deployment import ACKS, LINGER_MS


async def raw_pipe(bootstrap: str, source: str, sink: str, expected: int, group: str) -> float:
    """Consume `source` from the start and forward every record to `sink` (same partition);
    records/s from the first batch received to the last record acknowledged."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=ACKS, linger_ms=LINGER_MS)
    await consumer.start()
    await producer.start()
    try:
        count = 0
        first_at: float | None = None
        pending: list[asyncio.Future[Any]] = []
        last_commit = time.monotonic()
        while count < expected:
            asked = time.monotonic()
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                for m in messages:
                    pending.append(
                        await producer.send(sink, m.value, key=m.key, partition=tp.partition)
                    )
                count += len(messages)
            if first_at is None and count:
                first_at = asked  # the fetch that brought the first records counts
            if time.monotonic() - last_commit >= 1.0:  # the worker's commit interval
                await asyncio.gather(*pending)
                pending.clear()
                await consumer.commit()
                last_commit = time.monotonic()
        await asyncio.gather(*pending)
        await consumer.commit()
        assert first_at is not None
        return count / (time.monotonic() - first_at)
    finally:
        await producer.stop()
        await consumer.stop()


def measure_raw_pipe(
    run: BenchRun, inputs: Inputs, repeats: int, results: dict[str, Any]
) -> dict[str, float]:
    """The raw pipe over each codec's input topic, `repeats` times, into `results` (codec ->
    runs and median) as each codec completes; returns the medians, unrounded: the baselines."""
    medians: dict[str, float] = {}
    for codec, source in inputs.topics.items():
        rates = []
        for i in range(repeats):
            sink = run.topic(f"raw-{codec}-{i}")
            rate = asyncio.run(raw_pipe(run.bootstrap, source, sink, inputs.records, sink))
            log(f"raw pipe {codec} #{i + 1}: {rate:,.0f} records/s")
            rates.append(rate)
        medians[codec] = statistics.median(rates)
        results[codec] = repeated(rates)
    return medians


def ratio_to_raw(rate: float, baselines: dict[str, float], codec: str) -> float | None:
    """`rate` as a share of the raw pipe's median on `codec` (None when it was skipped)."""
    return round(rate / baselines[codec], 3) if codec in baselines else None
