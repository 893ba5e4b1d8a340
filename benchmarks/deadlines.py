"""The deadline timer (issue 14): the cost of a tick over many threads, and throughput on and off.

1. Tick cost: one `user_input` on each of `--deadline-threads` threads (BENCH_DEADLINE_THREADS),
   with current wall-clock timestamps, to one worker with `ORCHESTRAL_RUN_TIMEOUT=3600` and
   `ORCHESTRAL_DEADLINE_INTERVAL=1`: every thread has an active interaction whose run timeout
   lies an hour ahead, so the index holds them all and nothing fires. Once every record is
   handled, the worker's `orchestral_deadline_tick_seconds` histogram is read, and again after
   `--deadline-ticks` seconds (BENCH_DEADLINE_TICKS): the ticks in between (all of them over
   the full index) give the mean and the bucket-based p99; `orchestral_deadline_threads` is the
   size of the index.
2. Throughput with deadlines on (run timeout 3600 s) against off (0), in the same run, on the
   same input (`--deadline-records` records of the usual mix over `--threads` threads, current
   timestamps, JSON, at-least-once), alternating, `--repeats` times each; medians and their
   ratio. Measured by `benchmarks/throughput.py`'s `worker_throughput`.
"""

from __future__ import annotations

import re
import statistics
import time
import urllib.request
from typing import Any

from benchmarks.bench_run import PAYLOAD_BYTES, BenchRun, current_timestamp, encode, log, mb
from benchmarks.kafka_io import bench_deployment, wait_for_records
from benchmarks.throughput import worker_throughput
from devtools.deployment import WorkerProcess
from devtools.workload import generate
from schemas.json_codec import JsonCodec

TICK = "orchestral_deadline_tick_seconds"
DEADLINES_ON = {"ORCHESTRAL_RUN_TIMEOUT": "3600", "ORCHESTRAL_DEADLINE_INTERVAL": "1"}
DEADLINES_OFF = {"ORCHESTRAL_RUN_TIMEOUT": "0", "ORCHESTRAL_DEADLINE_INTERVAL": "1"}


def metrics_text(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as r:
        text: str = r.read().decode()
    return text


def sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


def histogram(text: str, name: str) -> tuple[float, float, dict[float, float]]:
    """(count, sum, cumulative count by upper bound) of a histogram in the exposition `text`."""
    buckets = {
        float(le): float(v)
        for le, v in re.findall(rf'^{name}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} (\S+)$', text, re.M)
    }
    return sample(text, f"{name}_count") or 0.0, sample(text, f"{name}_sum") or 0.0, buckets


def tick_stats(before: str, after: str) -> dict[str, Any]:
    """Mean and bucket-based p99 of the ticks observed between two readings of /metrics."""
    c0, s0, b0 = histogram(before, TICK)
    c1, s1, b1 = histogram(after, TICK)
    ticks = c1 - c0
    if ticks <= 0:
        return {"ticks": 0, "mean_ms": None, "p99_bucket_ms": None}
    p99 = next((le for le in sorted(b1) if b1[le] - b0.get(le, 0.0) >= 0.99 * ticks), float("inf"))
    return {
        "ticks": int(ticks),
        "mean_ms": round((s1 - s0) / ticks * 1000, 2),
        "p99_bucket_ms": None if p99 == float("inf") else round(p99 * 1000, 2),
    }


def first_inputs(threads: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "user_input",
            "thread_id": f"thread-{n}",
            "event_id": f"thread-{n}:init",
            "timestamp": current_timestamp(),
            "payload": {"message": "x" * (PAYLOAD_BYTES // 2)},
        }
        for n in range(threads)
    ]


def measure_tick(run: BenchRun, threads: int, seconds: float) -> dict[str, Any]:
    name = f"{run.run_id}-dl-index"
    d = bench_deployment(run.bootstrap, name, run.tmp, "", extra_env=DEADLINES_ON)
    d.create_topics()
    run.produce(d.events_topic, encode(first_inputs(threads), JsonCodec()))
    worker = d.worker(0).start()
    try:
        progress = wait_for_records([worker], threads, timeout=1800)
        assert progress.first_at is not None and progress.done_at is not None
        time.sleep(1.5)  # the tick under way when the last record was handled is left out
        before = metrics_text(worker)
        time.sleep(seconds)
        after = metrics_text(worker)
        out = {
            "threads": threads,
            "ticks_window_s": seconds,
            **tick_stats(before, after),
            "deadline_threads": sample(after, "orchestral_deadline_threads"),
            "records_in": sample(after, "orchestral_records_in_total"),
            "build_rate": round(threads / max(1e-9, progress.done_at - progress.first_at)),
            "peak_rss_mb": mb(worker.peak_rss_bytes()),
        }
    finally:
        d.stop_all()
    log(f"deadlines: tick over {threads:,} threads: {out}")
    return out


def measure_on_off(run: BenchRun, records: int, threads: int, repeats: int) -> dict[str, Any]:
    workload = generate(records, threads, payload_bytes=PAYLOAD_BYTES)
    for n, record in enumerate(workload):
        record["timestamp"] = current_timestamp(n)  # the run timeout lies an hour ahead
    topic = run.topic("in-deadlines")
    run.produce(topic, encode(workload, JsonCodec()))
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(repeats):
        for mode, env in (("on", DEADLINES_ON), ("off", DEADLINES_OFF)):
            d = bench_deployment(
                run.bootstrap, f"{run.run_id}-dl-{mode}-{i}", run.tmp, topic, extra_env=env
            )
            rates[mode].append(worker_throughput(d, records).rate)
            log(f"deadlines {mode} #{i + 1}: {rates[mode][-1]:,.0f} records/s")
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    return {
        "records": records,
        "threads": threads,
        "repeats": repeats,
        "on_runs": [round(r) for r in rates["on"]],
        "off_runs": [round(r) for r in rates["off"]],
        "on": round(on),
        "off": round(off),
        "ratio_on_off": round(on / off, 3) if off else None,
    }


def measure_deadlines(
    run: BenchRun, threads: int, seconds: float, records: int, flow_threads: int, repeats: int
) -> dict[str, Any]:
    return {
        "tick": measure_tick(run, threads, seconds),
        "throughput": measure_on_off(run, records, flow_threads, repeats),
    }
