"""The whole benchmark against a real broker, in one run: `make bench`.

    .venv/bin/python -m benchmarks.kafka_bench [--records N] [--threads N] [--repeats N] ...

Every option also reads an env var (BENCH_RECORDS, BENCH_THREADS, BENCH_REPEATS,
BENCH_RECOVERY_THREADS, BENCH_RECOVERY_EXTRA, BENCH_LATENCY_SECONDS, BENCH_LATENCY_MAX_RATE,
BENCH_CODECS, BENCH_SKIP, BENCH_EOS_RECOVERY) so `make bench` can be made smaller. The broker is
KAFKA_BOOTSTRAP_SERVERS if it answers, else one started for the run (free port, own data dir)
and stopped at the end.

Measured, in this order (each worker is `python -m processors.cli worker`, its own process), one
module each under benchmarks/:
1. the core alone, in process (core_bench.py);
2. the raw pipe (raw_pipe.py): an aiokafka consumer + producer (acks=all, linger 5 ms: the
   worker's settings) forwarding every input record to an output topic on the same partition,
   committing every second; no decoding, no state, no policy: the limit for a Python Kafka
   client here;
2b. a faust agent that acks every record and does nothing else (faust_ceiling.py, running
   faust_agent.py): what faust's own per-record path costs, the ceiling of any worker built on
   a faust agent;
3. worker throughput (throughput.py), at-least-once and exactly-once, per codec, from a
   pre-filled input topic (first record handled -> last record handled, from the worker's own
   metrics), median of `--repeats`, and its ratio to the raw pipe's median;
4. end-to-end latency (latency.py; send of the input -> receipt of its outcome record by a
   consumer) at 25% and 50% of the worker's at-least-once JSON throughput, with a paced
   producer;
5. recovery (recovery.py) with `--recovery-threads` threads of state: process start -> first
   record handled, from the local RocksDB and from an empty data dir (the changelog), plus a
   cold start (no state at all) for reference; peak RSS and state bytes per thread;
6. one worker against two (scaling.py; same group, partitions split), median of `--repeats`
   runs.

Results, written by report.py: benchmarks/results/kafka.json and the "Kafka" section of
BENCHMARKS.md. The run's shared pieces (broker, run id, temp dir, input topics) are in
bench_run.py, the Kafka plumbing (topics, progress, sizes) in kafka_io.py, the worker processes
and producing in devtools/deployment.py (shared with the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import core_bench
from benchmarks.bench_run import PARTITIONS, PAYLOAD_BYTES, BenchRun, fill_inputs, log
from benchmarks.faust_ceiling import measure_faust_ceiling
from benchmarks.kafka_io import delete_topics_with_prefix, kafka_broker
from benchmarks.latency import measure_latency
from benchmarks.raw_pipe import measure_raw_pipe
from benchmarks.recovery import measure_recovery
from benchmarks.report import RESULTS, TARGETS, write_report
from benchmarks.scaling import measure_scaling
from benchmarks.throughput import measure_throughput


def env_default(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    if value is None:
        return default
    return type(default)(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=env_default("BENCH_RECORDS", 200_000))
    p.add_argument("--threads", type=int, default=env_default("BENCH_THREADS", 10_000))
    p.add_argument("--repeats", type=int, default=env_default("BENCH_REPEATS", 3))
    p.add_argument(
        "--recovery-threads", type=int, default=env_default("BENCH_RECOVERY_THREADS", 100_000)
    )
    p.add_argument(
        "--recovery-extra",
        type=int,
        default=env_default("BENCH_RECOVERY_EXTRA", 100_000),
        help="records of the usual mix after one user input per recovery thread",
    )
    p.add_argument(
        "--latency-seconds", type=float, default=env_default("BENCH_LATENCY_SECONDS", 30.0)
    )
    p.add_argument(
        "--latency-max-rate",
        type=float,
        default=env_default("BENCH_LATENCY_MAX_RATE", 1500.0),
        help="the 100%% load of the latency steps when throughput is skipped",
    )
    p.add_argument("--codecs", default=env_default("BENCH_CODECS", "json,avro"))
    p.add_argument(
        "--skip",
        default=env_default("BENCH_SKIP", ""),
        help="comma-separated: core,raw,faust,throughput,eos,latency,recovery,scaling",
    )
    p.add_argument(
        "--eos-recovery",
        type=int,
        default=env_default("BENCH_EOS_RECOVERY", 1),
        help="also measure recovery from local state under exactly-once (1/0)",
    )
    p.add_argument("--keep-tmp", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    run_id = f"bench-{os.getpid()}-{int(time.time()) % 100_000}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    began = time.monotonic()
    report: dict[str, Any] = {
        "run_id": run_id,
        "workload": {
            "records": args.records,
            "threads": args.threads,
            "mix": "60% user input, 30% commands, 10% executor output",
            "payload_bytes": PAYLOAD_BYTES,
            "partitions": PARTITIONS,
            "codecs": codecs,
            "repeats": args.repeats,
            "recovery_threads": args.recovery_threads,
            "recovery_extra_records": args.recovery_extra,
            "latency_seconds": args.latency_seconds,
        },
        "targets": TARGETS,
        "load_average": {"before": round(os.getloadavg()[0], 2)},
    }
    if "core" not in skip:
        log("core, in process")
        core_bench.main([])
        report["core"] = json.loads(core_bench.RESULTS.read_text())["records_per_second"]
    with kafka_broker(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")) as (bootstrap, how):
        report["broker"] = {"bootstrap": bootstrap, "how": how}
        try:
            measure(args, skip, codecs, BenchRun(bootstrap, run_id, tmp), report)
        finally:
            deleted = asyncio.run(delete_topics_with_prefix(bootstrap, run_id))
            log(f"deleted {len(deleted)} topics")
            if not args.keep_tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            write_report(report, round(time.monotonic() - began), how)
    log(f"done in {report['duration_s']}s; results in {RESULTS}")
    return 0


def measure(
    args: argparse.Namespace,
    skip: set[str],
    codecs: list[str],
    run: BenchRun,
    report: dict[str, Any],
) -> None:
    """The measurements in the order of the docstring, each one's figures into `report` as they
    come (a run that fails half-way still reports what it measured)."""
    inputs = fill_inputs(run, codecs, args.records, args.threads)
    report["workload"]["mean_value_bytes"] = inputs.mean_value_bytes

    raw: dict[str, float] = {}
    if "raw" not in skip:
        report["raw_pipe"] = {}
        raw = measure_raw_pipe(run, inputs, args.repeats, report["raw_pipe"])
    if "faust" not in skip:
        report["faust_agent"] = {}
        measure_faust_ceiling(run, inputs, args.repeats, raw, report["faust_agent"])
    alo_json: float | None = None
    if "throughput" not in skip:
        report["worker"] = {}
        guarantees = ["at_least_once"] + ([] if "eos" in skip else ["exactly_once"])
        alo_json = measure_throughput(run, inputs, guarantees, args.repeats, raw, report["worker"])
    if "latency" not in skip:
        report["latency"] = {}
        max_rate = alo_json or args.latency_max_rate
        measure_latency(run, max_rate, args.latency_seconds, args.threads, report["latency"])
    if "recovery" not in skip:
        threads, extra = args.recovery_threads, args.recovery_extra
        report["recovery"] = measure_recovery(run, threads, extra, "at_least_once")
        if args.eos_recovery:
            report["recovery_eos"] = measure_recovery(
                run, threads, extra, "exactly_once", local_only=True
            )
    if "scaling" not in skip:
        one = report.get("worker", {}).get(f"{codecs[0]}/at_least_once", {}).get("median")
        report["scaling"] = measure_scaling(run, inputs, codecs[0], args.repeats, one)


if __name__ == "__main__":
    raise SystemExit(main())
