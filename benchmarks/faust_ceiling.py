"""The second baseline: the ceiling of any worker built on a faust agent.

A faust agent that acks every record and does nothing else (`benchmarks/faust_agent.py`, run
in its own process) measures what faust's own per-record path costs here; reported beside the
raw pipe, as a ratio to it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.bench_run import BenchRun, Inputs, log, repeated
from benchmarks.raw_pipe import ratio_to_raw
from devtools.deployment import ROOT


def faust_agent_rate(bootstrap: str, topic: str, expected: int, data_dir: Path) -> float:
    """records/s of a faust agent that only acks (benchmarks/faust_agent.py), its own process."""
    result = data_dir / "result.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.faust_agent", "--bootstrap", bootstrap]
    command += ["--topic", topic, "--records", str(expected), "--data-dir", str(data_dir)]
    done = subprocess.run(
        [*command, "--result", str(result)],
        cwd=ROOT,
        capture_output=True,
        timeout=900,
        check=False,
    )
    if not result.exists():
        raise RuntimeError(
            f"faust agent baseline failed ({done.returncode}): {done.stderr[-2000:]!r}"
        )
    return float(json.loads(result.read_text())["rate"])


def measure_faust_ceiling(
    run: BenchRun,
    inputs: Inputs,
    repeats: int,
    raw: dict[str, float],
    results: dict[str, Any],
) -> None:
    """The ack-only faust agent over each codec's input topic, `repeats` times, against the raw
    pipe's medians `raw`; into `results` (codec -> runs, median, ratio to raw)."""
    for codec, topic in inputs.topics.items():
        rates = [
            faust_agent_rate(run.bootstrap, topic, inputs.records, run.tmp / f"faust-{codec}-{i}")
            for i in range(repeats)
        ]
        log(f"faust agent, ack only, {codec}: {', '.join(f'{r:,.0f}' for r in rates)}/s")
        median = statistics.median(rates)
        results[codec] = {**repeated(rates), "ratio_to_raw": ratio_to_raw(median, raw, codec)}
