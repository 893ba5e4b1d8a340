"""Benchmark of the core alone, in process: no Kafka.

    .venv/bin/python -m benchmarks.core_bench [--records N] [--threads N]

Measures records per second through (1) the reduce step alone (validated records in, output
dicts out), (2) decode + reduce + encode with the JSON codec, (3) the same with Avro, on the
realistic mix of `devtools/workload.py`. Each figure is the median of 3 runs, reported with
the machine, and written to `benchmarks/results/core.json` and the core section of
BENCHMARKS.md. Numbers on a noisy 2-core machine vary by +-10%: compare ratios within a run.
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
from processors.core import Position, ThreadState, apply_in_place, default_limits
from schemas.avro_codec import AvroCodec
from schemas.codec import Codec, InputDecoder
from schemas.json_codec import JsonCodec
from schemas.records import Command, Event, parse_input

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "core.json"
SECTION = "## Core (in process)"


def reduce_only(records: list[Event | Command]) -> Callable[[], int]:
    limits = default_limits()

    def run() -> int:
        states: dict[str, ThreadState] = {}
        for offset, record in enumerate(records):
            state = states.get(record.thread_id)
            if state is None:
                state = states[record.thread_id] = ThreadState(record.thread_id)
            apply_in_place(
                state, record, Position("events", 0, offset), limits, committed_offset=offset
            )
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
    report = {
        "records": args.records,
        "threads": args.threads,
        "mix": "60% user input, 30% commands, 10% executor output, ~300-byte payloads",
        "records_per_second": {k: round(v) for k, v in results.items()},
        "machine": machine(),
        "command": "make bench-core",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    write_section(report)
    print(json.dumps(report["records_per_second"], indent=2))
    return 0


def write_section(report: dict[str, Any]) -> None:
    rates = report["records_per_second"]
    m = report["machine"]
    section = "\n".join(
        [
            SECTION,
            "",
            f"{report['records']:,} records over {report['threads']:,} threads ({report['mix']}); "
            "median of 3 runs, one core, no Kafka. Command: `make bench-core`.",
            "",
            "| step | records/s | aim |",
            "|---|---:|---:|",
            f"| reduce (validated record -> outputs) | {rates['reduce']:,} | 100,000 |",
            f"| decode + reduce + encode, JSON | {rates['decode_reduce_encode_json']:,} | 30,000 |",
            f"| decode + reduce + encode, Avro | {rates['decode_reduce_encode_avro']:,} | 30,000 |",
            "",
            f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}.",
            "",
        ]
    )
    replace_section(SECTION, section)


if __name__ == "__main__":
    raise SystemExit(main())
