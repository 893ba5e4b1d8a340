"""One worker against two: the same group, the partitions split between two processes.

Against the one-worker at-least-once median of `benchmarks/throughput.py`, same codec and input.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.bench_run import BenchRun, Inputs, log
from benchmarks.kafka_io import bench_deployment
from benchmarks.throughput import worker_throughput


def measure_scaling(
    run: BenchRun, inputs: Inputs, codec: str, repeats: int, one: float | None
) -> dict[str, Any]:
    """Two workers over `codec`'s input topic, `repeats` times; median and speedup against
    `one`, the one-worker median (None when throughput was skipped)."""
    rates = []
    for i in range(repeats):
        name = f"{run.run_id}-two-{i}"
        d = bench_deployment(run.bootstrap, name, run.tmp, inputs.topics[codec], codec=codec)
        rates.append(worker_throughput(d, inputs.records, count=2).rate)
        log(f"two workers #{i + 1}: {rates[-1]:,.0f} records/s")
    two = statistics.median(rates)
    log(f"two workers: {two:,.0f} records/s (one: {one})")
    return {
        "codec": codec,
        "one_worker": one,
        "two_workers_runs": [round(r) for r in rates],
        "two_workers": round(two),
        "speedup": round(two / one, 2) if one else None,
    }
