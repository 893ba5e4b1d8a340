"""Benchmark of the core alone, in process: no Kafka.

    .venv/bin/python -m benchmarks.core_bench [--records N] [--threads N] [--baseline FILE]

Measures records per second through (1) the reduce step alone (validated records in, output
dicts out), (2) decode + reduce + encode with the JSON codec, (3) the same with Avro, on the
realistic mix of `devtools/workload.py`, and the state each thread leaves (its RocksDB key +
value, as the worker saves it) at the end. Each rate is the median of 3 runs, reported with
the machine and against its target (met/missed), and written to `benchmarks/results/core.json`
and the core section of BENCHMARKS.md. `--baseline`: the core.json of another checkout (say
main's, run just before on the same machine), shown beside. Numbers on a noisy 2-core machine
vary by +-10% and more when other jobs run: compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.markdown import replace_section
from devtools.workload import generate
from processors.core import Limits, Position, ThreadState, apply_in_place, default_limits
from schemas.avro_codec import AvroCodec
from schemas.codec import Codec, InputDecoder
from schemas.json_codec import JsonCodec
from schemas.records import Command, Event, parse_input

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "core.json"
SECTION = "## Core (in process)"
# The targets: records/s at least, bytes per thread at most.
TARGETS: dict[str, int] = {
    "reduce": 100_000,
    "decode_reduce_encode_json": 40_000,
    "decode_reduce_encode_avro": 30_000,
}
STATE_BYTES_TARGET = 600
STEPS = {
    "reduce": "reduce (validated record -> outputs)",
    "decode_reduce_encode_json": "decode + reduce + encode, JSON",
    "decode_reduce_encode_avro": "decode + reduce + encode, Avro",
}


def apply_all(records: list[Event | Command], limits: Limits) -> dict[str, ThreadState]:
    """Every record applied in order, each thread's state kept in memory."""
    states: dict[str, ThreadState] = {}
    for offset, record in enumerate(records):
        state = states.get(record.thread_id)
        if state is None:
            state = states[record.thread_id] = ThreadState(record.thread_id)
        apply_in_place(
            state, record, Position("events", 0, offset), limits, committed_offset=offset
        )
    return states


def reduce_only(records: list[Event | Command]) -> Callable[[], int]:
    limits = default_limits()

    def run() -> int:
        apply_all(records, limits)
        return len(records)

    return run


def pipeline(values: list[bytes], codec: Codec) -> Callable[[], int]:
    limits = default_limits()
    decoder = InputDecoder()

    def run() -> int:
        states: dict[str, ThreadState] = {}
        for offset, value in enumerate(values):
            record = decoder.decode(value)
            state = states.get(record.thread_id)
            if state is None:
                state = states[record.thread_id] = ThreadState(record.thread_id)
            outputs = apply_in_place(
                state, record, Position("events", 0, offset), limits, committed_offset=offset
            )
            for _, output in outputs:
                codec.encode(output)
            state.to_bytes()  # the worker saves the state after every record
        return len(values)

    return run


def state_bytes(records: list[Event | Command]) -> float:
    """Mean RocksDB key + value per thread after the workload, saved as the worker saves it."""
    states = apply_all(records, default_limits())
    sizes = [len(t.encode()) + len(s.to_bytes()) for t, s in states.items()]
    return statistics.mean(sizes)


def median_rate(run: Callable[[], int], repeats: int = 3) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        n = run()
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=10_000)
    parser.add_argument("--baseline", type=Path, help="core.json of another checkout, same run")
    parser.add_argument("--baseline-label", help="what the baseline is, for the report")
    args = parser.parse_args(argv)
    raw = generate(args.records, args.threads)
    parsed = [parse_input(r) for r in raw]
    json_values = [JsonCodec().encode(r) for r in raw]
    avro = AvroCodec()
    avro_values = [avro.encode(r) for r in raw]
    results = {
        "reduce": median_rate(reduce_only(parsed)),
        "decode_reduce_encode_json": median_rate(pipeline(json_values, JsonCodec())),
        "decode_reduce_encode_avro": median_rate(pipeline(avro_values, avro)),
    }
    report: dict[str, Any] = {
        "records": args.records,
        "threads": args.threads,
        "mix": "60% user input, 30% commands, 10% executor output, ~300-byte payloads",
        "records_per_second": {k: round(v) for k, v in results.items()},
        "state_bytes_per_thread": round(state_bytes(parsed)),
        "machine": machine(),
        "load_average_before": round(os.getloadavg()[0], 2),
        "command": "make bench-core",
    }
    if args.baseline is not None:
        report["baseline"] = json.loads(args.baseline.read_text())
        if args.baseline_label:
            report["baseline"]["label"] = args.baseline_label
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    write_section(report)
    print(json.dumps(report["records_per_second"] | {"state": report["state_bytes_per_thread"]}))
    return 0


def write_section(report: dict[str, Any]) -> None:
    rates, state = report["records_per_second"], report["state_bytes_per_thread"]
    base = report.get("baseline")
    m = report["machine"]
    head = "| step | records/s | target |" + (" baseline (same run) |" if base else "")
    rows = [head, "|---|---:|---|" + ("---:|" if base else "")]
    for key, label in STEPS.items():
        rate, target = rates[key], TARGETS[key]
        row = f"| {label} | {rate:,} | >= {target:,}: {_verdict(rate >= target)} |"
        if base:
            row += f" {base['records_per_second'][key]:,} |"
        rows.append(row)
    verdict = _verdict(state <= STATE_BYTES_TARGET)
    row = f"| state per thread, RocksDB key + value (bytes) | {state:,} | <= 600: {verdict} |"
    if base:
        old = base.get("state_bytes_per_thread")
        row += f" {old:,} |" if old is not None else " |"
    rows.append(row)
    section = "\n".join(
        [
            SECTION,
            "",
            f"{report['records']:,} records over {report['threads']:,} threads ({report['mix']}); "
            "rates are the median of 3 runs, one core, no Kafka; the state is the mean over the "
            "threads at the end, each record's outputs in its replay buffer (committed before "
            "the next). Command: `make bench-core`.",
            "",
            *rows,
            "",
            *([f"Baseline: {base['label']}.", ""] if base and base.get("label") else []),
            f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}; "
            f"1-minute load average {report['load_average_before']} before the run (other jobs "
            "may share the machine: compare the figures of one run).",
            "",
        ]
    )
    replace_section(SECTION, section)


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


if __name__ == "__main__":
    raise SystemExit(main())
