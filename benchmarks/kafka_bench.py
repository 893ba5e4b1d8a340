"""The whole benchmark against a real broker, in one run: `make bench`.

    .venv/bin/python -m benchmarks.kafka_bench [--records N] [--threads N] [--repeats N] ...

Every option also reads an env var (BENCH_RECORDS, BENCH_THREADS, BENCH_REPEATS,
BENCH_RECOVERY_THREADS, BENCH_RECOVERY_EXTRA, BENCH_LATENCY_SECONDS, BENCH_LATENCY_MAX_RATE,
BENCH_CODECS, BENCH_SKIP, BENCH_EOS_RECOVERY, BENCH_API_*, BENCH_DEADLINE_*) so `make bench`
can be made smaller. The broker is
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
   runs;
7. the thread API of one worker (thread_api.py): restore of the history index from an empty
   data dir with `--api-large` store records on one thread and `--api-small` on a thread of
   another partition, p50/p99 of state and history reads on both, of `POST ?wait=5`, and the
   delivery latency of `--api-streams` concurrent SSE streams;
8. the deadline timer (deadlines.py): time per tick over `--deadline-threads` threads with a
   pending deadline, and throughput with deadlines on against off, medians of `--repeats`.

Steps skipped with BENCH_SKIP / --skip: core, raw, faust, throughput, eos, latency, recovery,
scaling, api, deadlines. The input topics of steps 2, 2b, 3 and 6 are filled only if one of them
runs. A run that skips a step keeps that step's figures from the previous results (report.py
merges; each merged section says by which run it was measured).

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
from benchmarks.bench_run import PARTITIONS, PAYLOAD_BYTES, BenchRun, Inputs, fill_inputs, log
from benchmarks.deadlines import measure_deadlines
from benchmarks.faust_ceiling import measure_faust_ceiling
from benchmarks.kafka_io import delete_topics_with_prefix, kafka_broker
from benchmarks.latency import measure_latency
from benchmarks.raw_pipe import measure_raw_pipe
from benchmarks.recovery import measure_recovery
from benchmarks.report import RESULTS, TARGETS, write_report
from benchmarks.scaling import measure_scaling
from benchmarks.thread_api import measure_thread_api
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
        help="comma-separated: core,raw,faust,throughput,eos,latency,recovery,scaling,api,"
        "deadlines",
    )
    p.add_argument(
        "--eos-recovery",
        type=int,
        default=env_default("BENCH_EOS_RECOVERY", 1),
        help="also measure recovery from local state under exactly-once (1/0)",
    )
    p.add_argument(
        "--api-large",
        type=int,
        default=env_default("BENCH_API_LARGE", 1_000_000),
        help="store records of the thread API's large thread",
    )
    p.add_argument(
        "--api-small",
        type=int,
        default=env_default("BENCH_API_SMALL", 10_000),
        help="store records of the thread API's small thread (another partition)",
    )
    p.add_argument(
        "--api-requests",
        type=int,
        default=env_default("BENCH_API_REQUESTS", 2000),
        help="sequential GETs per endpoint and thread",
    )
    p.add_argument(
        "--api-posts",
        type=int,
        default=env_default("BENCH_API_POSTS", 300),
        help="sequential POST ?wait=5 on new threads",
    )
    p.add_argument(
        "--api-streams",
        type=int,
        default=env_default("BENCH_API_STREAMS", 100),
        help="concurrent SSE streams on one worker",
    )
    p.add_argument(
        "--deadline-threads",
        type=int,
        default=env_default("BENCH_DEADLINE_THREADS", 100_000),
        help="threads with a pending deadline for the tick's cost",
    )
    p.add_argument(
        "--deadline-ticks",
        type=float,
        default=env_default("BENCH_DEADLINE_TICKS", 30.0),
        help="seconds of ticks read over the full index (one tick a second)",
    )
    p.add_argument(
        "--deadline-records",
        type=int,
        default=env_default("BENCH_DEADLINE_RECORDS", 200_000),
        help="records of the usual mix (over --threads) for throughput with deadlines on/off",
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
    if {"raw", "faust", "throughput", "scaling"} <= skip:
        inputs = Inputs(args.records, {}, {})
    else:
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
    if "api" not in skip:
        log("thread API")
        report["thread_api"] = measure_thread_api(
            run, args.api_large, args.api_small, args.api_requests, args.api_posts, args.api_streams
        )
    if "deadlines" not in skip:
        log("deadline timer")
        report["deadlines"] = measure_deadlines(
            run,
            args.deadline_threads,
            args.deadline_ticks,
            args.deadline_records,
            args.threads,
            args.repeats,
        )


if __name__ == "__main__":
    raise SystemExit(main())
