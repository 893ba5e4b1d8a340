"""Worker throughput, at-least-once and exactly-once, per codec, against the raw pipe.

Each run is a fresh deployment (`python -m processors.cli worker`, its own process and group)
over a pre-filled input topic: first record handled -> last record handled, from the worker's
own metrics. The scaling measurement (`benchmarks/scaling.py`) reuses `worker_throughput`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.bench_run import BenchRun, Inputs, log, repeated
from benchmarks.kafka_io import bench_deployment, wait_for_records
from benchmarks.raw_pipe import ratio_to_raw
from devtools.deployment import Deployment


@dataclass
class Run:
    rate: float
    startup_s: float  # process start -> first record handled
    peak_rss_mb: float | None


def worker_throughput(
    deployment: Deployment, expected: int, count: int = 1, timeout: float = 1800
) -> Run:
    """`count` workers of `deployment` until together they have handled `expected` records.

    The rate leaves out the records already handled at the first sample, so start-up is not
    counted; peak RSS is the largest of the workers'."""
    workers = [deployment.worker(i).start() for i in range(count)]
    try:
        progress = wait_for_records(workers, expected, timeout)
        assert progress.first_at is not None and progress.done_at is not None
        first_count = next(n for _, n in progress.samples if n > 0)
        rate = (expected - first_count) / max(1e-9, progress.done_at - progress.first_at)
        rss = [w.peak_rss_bytes() for w in workers]
        peak = max((r for r in rss if r is not None), default=None)
        return Run(
            rate,
            progress.first_at - workers[0].started_at,
            peak / 2**20 if peak is not None else None,
        )
    finally:
        deployment.stop_all()


def measure_throughput(
    run: BenchRun,
    inputs: Inputs,
    guarantees: list[str],
    repeats: int,
    raw: dict[str, float],
    results: dict[str, Any],
) -> float | None:
    """One worker over each codec's input topic under each guarantee, `repeats` times, against
    the raw pipe's medians `raw`; into `results` ("codec/guarantee" -> runs, median, ratio to
    raw, start-up, peak RSS). Returns the at-least-once JSON median, the latency's 100% load."""
    alo_json: float | None = None
    for codec, topic in inputs.topics.items():
        for guarantee in guarantees:
            runs = []
            for i in range(repeats):
                name = f"{run.run_id}-w-{codec}-{guarantee[:3]}-{i}"
                d = bench_deployment(
                    run.bootstrap, name, run.tmp, topic, codec=codec, guarantee=guarantee
                )
                one = worker_throughput(d, inputs.records)
                log(
                    f"worker {codec} {guarantee} #{i + 1}: {one.rate:,.0f} records/s "
                    f"(start {one.startup_s:.1f}s, peak RSS {one.peak_rss_mb:.0f} MB)"
                )
                runs.append(one)
            median = statistics.median(r.rate for r in runs)
            results[f"{codec}/{guarantee}"] = {
                **repeated([r.rate for r in runs]),
                "ratio_to_raw": ratio_to_raw(median, raw, codec),
                "startup_s": [round(r.startup_s, 1) for r in runs],
                "peak_rss_mb": [round(r.peak_rss_mb or 0) for r in runs],
            }
            if codec == "json" and guarantee == "at_least_once":
                alo_json = median
    return alo_json
