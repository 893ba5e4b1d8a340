"""End-to-end latency under a paced load: input sent -> its outcome record received.

One at-least-once JSON worker; a paced producer sends at 25% and then 50% of the worker's
at-least-once JSON throughput (or of `--latency-max-rate` when throughput was skipped), and a
consumer of the outcomes topic times each record's outcome. The first seconds of each step are
left out (warm-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from benchmarks.bench_run import PARTITIONS, PAYLOAD_BYTES, BenchRun, log, mb
from benchmarks.kafka_io import bench_deployment, wait_for_records
from devtools.deployment import ACKS, LINGER_MS
from devtools.workload import generate
from schemas.json_codec import JsonCodec

FRACTIONS = [0.25, 0.5]  # the load steps, as shares of the 100% rate
WARM_RECORDS = 500  # sent unpaced first, so the worker has joined and handled something

_SOURCE_ID = re.compile(rb'"source_event_id":"([^"]*)"')


async def paced_latency(
    bootstrap: str,
    events_topic: str,
    outcomes_topic: str,
    records: list[tuple[str, bytes, bytes]],
    rate: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Send (event id, key, value) at `rate`/s; latency = outcome received - input sent."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=ACKS, linger_ms=LINGER_MS)
    await consumer.start()
    await producer.start()
    sent: dict[bytes, float] = {}
    latencies: dict[bytes, float] = {}  # event id -> seconds from send to outcome received
    wanted = {r[0].encode() for r in records}
    try:
        tps = [TopicPartition(outcomes_topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolves the seek before anything is sent

        async def receive() -> None:
            while len(latencies) < len(wanted):
                batch = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for messages in batch.values():
                    for m in messages:
                        match = _SOURCE_ID.search(m.value or b"")
                        eid = match.group(1) if match else b""
                        if eid in sent and eid not in latencies:
                            latencies[eid] = now - sent[eid]

        receiver = asyncio.ensure_future(receive())
        started = time.monotonic()
        tick = 0.002
        index = 0
        while index < len(records):
            due = int((time.monotonic() - started) * rate) + 1
            while index < min(due, len(records)):
                event_id, key, value = records[index]
                sent[event_id.encode()] = time.monotonic()
                await producer.send(events_topic, value, key=key)
                index += 1
            await asyncio.sleep(tick)
        send_s = time.monotonic() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiver, timeout=60)
        # Leave out the first `warmup_s` of sends.
        cutoff = started + warmup_s
        steady = sorted(lat for eid, lat in latencies.items() if sent[eid] >= cutoff)
        # When the slowest records were sent (s after the start): stalls show as clusters.
        slowest = sorted(
            ((lat, sent[eid] - started) for eid, lat in latencies.items() if sent[eid] >= cutoff),
            reverse=True,
        )[:: max(1, len(steady) // 1000)][:20]
        received = len(latencies)
        return {
            "target_rate": round(rate),
            "achieved_send_rate": round(len(records) / send_s),
            "sent": len(records),
            "received": received,
            "samples": len(steady),
            "p50_ms": percentile(steady, 50) * 1000 if steady else None,
            "p99_ms": percentile(steady, 99) * 1000 if steady else None,
            "p999_ms": percentile(steady, 99.9) * 1000 if steady else None,
            "max_ms": steady[-1] * 1000 if steady else None,
            "slowest_sent_at_s_latency_ms": [
                [round(t, 2), round(lat * 1000)] for lat, t in slowest
            ],
        }
    finally:
        await producer.stop()
        await consumer.stop()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    rank = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return values[rank]


def measure_latency(
    run: BenchRun, max_rate: float, seconds: float, threads: int, results: dict[str, Any]
) -> None:
    """Latency at each of FRACTIONS of `max_rate`, `seconds` of paced sends each, on `threads`
    threads; into `results` ("25%", "50%" -> percentiles) and the worker's peak RSS."""
    results["max_rate_basis"] = round(max_rate)
    lat_topic = run.topic("lat-in")
    d = bench_deployment(run.bootstrap, f"{run.run_id}-lat", run.tmp, lat_topic)
    sizes_needed = [int(max_rate * f * seconds) for f in FRACTIONS]
    records = generate(
        WARM_RECORDS + sum(sizes_needed), threads, seed=11, payload_bytes=PAYLOAD_BYTES
    )
    json_codec = JsonCodec()
    paced = [
        (str(r["event_id"]), str(r["thread_id"]).encode(), json_codec.encode(r)) for r in records
    ]
    worker = d.worker(0).start()
    try:
        run.produce(lat_topic, [(k, v) for _, k, v in paced[:WARM_RECORDS]])
        wait_for_records([worker], WARM_RECORDS, 300)
        start = WARM_RECORDS
        for fraction, size in zip(FRACTIONS, sizes_needed, strict=True):
            result = asyncio.run(
                paced_latency(
                    run.bootstrap,
                    lat_topic,
                    f"{d.name}.outcomes",
                    paced[start : start + size],
                    max_rate * fraction,
                    warmup_s=min(5.0, seconds / 5),
                )
            )
            start += size
            results[f"{int(fraction * 100)}%"] = result
            log(f"latency at {fraction:.0%}: {result}")
        results["peak_rss_mb"] = mb(worker.peak_rss_bytes(), None)
    finally:
        d.stop_all()
