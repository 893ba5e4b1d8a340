"""The whole benchmark against a real broker, in one run: `make bench`.

    .venv/bin/python -m benchmarks.kafka_bench [--records N] [--threads N] [--repeats N] ...

Every option also reads an env var (BENCH_RECORDS, BENCH_THREADS, BENCH_REPEATS,
BENCH_RECOVERY_THREADS, BENCH_RECOVERY_EXTRA, BENCH_LATENCY_SECONDS, BENCH_CODECS, BENCH_SKIP,
BENCH_EOS_RECOVERY) so `make bench` can be made smaller. The broker is KAFKA_BOOTSTRAP_SERVERS
if it answers, else one started for the run (free port, own data dir) and stopped at the end.

Measured, in this order (each worker is `python -m processors.cli worker`, its own process):
1. the core alone, in process (benchmarks/core_bench.py);
2. the raw pipe: an aiokafka consumer + producer (acks=all, linger 5 ms: the worker's settings)
   forwarding every input record to an output topic on the same partition, committing every
   second; no decoding, no state, no policy: the limit for a Python Kafka client here;
2b. a faust agent that acks every record and does nothing else (benchmarks/faust_agent.py): what
   faust's own per-record path costs, the ceiling of any worker built on a faust agent;
3. worker throughput, at-least-once and exactly-once, per codec, from a pre-filled input topic
   (first record handled -> last record handled, from the worker's own metrics), median of
   `--repeats`, and its ratio to the raw pipe's median;
4. end-to-end latency (send of the input -> receipt of its outcome record by a consumer) at 25%
   and 50% of the worker's at-least-once JSON throughput, with a paced producer;
5. recovery with `--recovery-threads` threads of state: process start -> first record handled,
   from the local RocksDB and from an empty data dir (the changelog), plus a cold start (no
   state at all) for reference; peak RSS and state bytes per thread;
6. one worker against two (same group, partitions split), median of `--repeats` runs.

Results: benchmarks/results/kafka.json and the "Kafka" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from benchmarks import core_bench
from benchmarks.kafka_io import (
    ACKS,
    LINGER_MS,
    Deployment,
    WorkerProcess,
    create_topics,
    delete_topics_with_prefix,
    dir_bytes,
    kafka_broker,
    produce,
    rocksdb_logical_bytes,
    wait_for_records,
)
from benchmarks.markdown import replace_section
from benchmarks.workload import generate
from processors.broker import KAFKA_VERSION
from schemas.avro_codec import AvroCodec
from schemas.codec import Codec
from schemas.json_codec import JsonCodec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "kafka.json"
SECTION = "## Kafka (make bench)"
PAYLOAD_BYTES = 500  # -> about 400 bytes per JSON input record on the workload's mix
PARTITIONS = 8
TARGETS = {
    "alo_ratio": 0.60,
    "eos_ratio": 0.45,
    "p99_ms_25": 20.0,
    "recovery_local_s": 3.0,
    "recovery_changelog_s": 30.0,
    "peak_rss_mb": 400.0,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] bench: {message}", flush=True)


def codec_of(name: str) -> Codec:
    return AvroCodec() if name == "avro" else JsonCodec()


def encode(records: list[dict[str, Any]], codec: Codec) -> list[tuple[bytes, bytes]]:
    return [(str(r["thread_id"]).encode(), codec.encode(r)) for r in records]


# --- the raw pipe -------------------------------------------------------------------------------


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


# --- worker runs --------------------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    startup_s: float  # process start -> first record handled
    peak_rss_mb: float | None


def worker_throughput(
    deployment: Deployment, expected: int, count: int = 1, timeout: float = 1800
) -> Run:
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


# --- latency ------------------------------------------------------------------------------------

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


# --- recovery -----------------------------------------------------------------------------------


def recovery_workload(threads: int, extra: int, seed: int) -> list[dict[str, Any]]:
    """One user input on every thread, then `extra` records of the usual mix."""
    first = [
        {
            "type": "user_input",
            "thread_id": f"thread-{n}",
            "event_id": f"thread-{n}:init",
            "timestamp": "2026-11-01T00:00:00Z",
            "payload": {"message": "x" * (PAYLOAD_BYTES // 2)},
        }
        for n in range(threads)
    ]
    return first + generate(extra, threads, seed=seed, payload_bytes=PAYLOAD_BYTES)


def markers(tag: str, count: int = 64) -> list[dict[str, Any]]:
    """New threads, spread over the partitions by their keys: something to handle at once."""
    return [
        {
            "type": "user_input",
            "thread_id": f"marker-{tag}-{n}",
            "event_id": f"marker-{tag}-{n}",
            "timestamp": "2026-11-02T00:00:00Z",
            "payload": {"message": "marker"},
        }
        for n in range(count)
    ]


def time_to_first_record(worker: WorkerProcess, timeout: float = 900) -> dict[str, Any]:
    worker.start()
    try:
        progress = wait_for_records([worker], 1, timeout, poll=0.05)
        assert progress.first_at is not None
        rss = worker.peak_rss_bytes()
        return {
            "start_to_first_record_s": round(progress.first_at - worker.started_at, 2),
            "peak_rss_mb": round(rss / 2**20, 1) if rss else None,
        }
    finally:
        worker.stop()


# --- the run ------------------------------------------------------------------------------------


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
            measure(args, skip, codecs, run_id, tmp, bootstrap, report)
        finally:
            deleted = asyncio.run(delete_topics_with_prefix(bootstrap, run_id))
            log(f"deleted {len(deleted)} topics")
            if not args.keep_tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            report["duration_s"] = round(time.monotonic() - began)
            report["machine"] = core_bench.machine()
            report["versions"] = versions(how)
            overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("BENCH_"))
            report["command"] = " ".join([*overrides, "make bench"])
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(report, indent=2) + "\n")
            write_section(report)
    log(f"done in {report['duration_s']}s; results in {RESULTS}")
    return 0


def measure(
    args: argparse.Namespace,
    skip: set[str],
    codecs: list[str],
    run_id: str,
    tmp: Path,
    bootstrap: str,
    report: dict[str, Any],
) -> None:
    workload = generate(args.records, args.threads, payload_bytes=PAYLOAD_BYTES)
    inputs: dict[str, str] = {}
    sizes: dict[str, float] = {}
    for codec in codecs:
        topic = inputs[codec] = f"{run_id}-in-{codec}"
        encoded = encode(workload, codec_of(codec))
        sizes[codec] = round(statistics.mean(len(v) for _, v in encoded), 1)
        asyncio.run(create_topics(bootstrap, [topic], PARTITIONS))
        log(f"producing {len(encoded):,} {codec} records ({sizes[codec]} bytes mean) to {topic}")
        asyncio.run(produce(bootstrap, topic, encoded, PARTITIONS))
    report["workload"]["mean_value_bytes"] = sizes
    n = args.records

    raw: dict[str, float] = {}
    if "raw" not in skip:
        report["raw_pipe"] = {}
        for codec in codecs:
            rates = []
            for i in range(args.repeats):
                sink = f"{run_id}-raw-{codec}-{i}"
                asyncio.run(create_topics(bootstrap, [sink], PARTITIONS))
                rate = asyncio.run(
                    raw_pipe(bootstrap, inputs[codec], sink, n, f"{run_id}-raw-{codec}-{i}")
                )
                log(f"raw pipe {codec} #{i + 1}: {rate:,.0f} records/s")
                rates.append(rate)
            raw[codec] = statistics.median(rates)
            report["raw_pipe"][codec] = {
                "runs": [round(r) for r in rates],
                "median": round(raw[codec]),
            }

    if "faust" not in skip:
        report["faust_agent"] = {}
        for codec in codecs:
            rates = [
                faust_agent_rate(bootstrap, inputs[codec], n, tmp / f"faust-{codec}-{i}")
                for i in range(args.repeats)
            ]
            log(f"faust agent, ack only, {codec}: {', '.join(f'{r:,.0f}' for r in rates)}/s")
            median = statistics.median(rates)
            report["faust_agent"][codec] = {
                "runs": [round(r) for r in rates],
                "median": round(median),
                "ratio_to_raw": round(median / raw[codec], 3) if codec in raw else None,
            }

    alo_json: float | None = None
    if "throughput" not in skip:
        report["worker"] = {}
        guarantees = ["at_least_once"] + ([] if "eos" in skip else ["exactly_once"])
        for codec in codecs:
            for guarantee in guarantees:
                runs = []
                for i in range(args.repeats):
                    d = Deployment(
                        bootstrap,
                        f"{run_id}-w-{codec}-{guarantee[:3]}-{i}",
                        tmp,
                        inputs[codec],
                        codec=codec,
                        guarantee=guarantee,
                    )
                    run = worker_throughput(d, n)
                    log(
                        f"worker {codec} {guarantee} #{i + 1}: {run.rate:,.0f} records/s "
                        f"(start {run.startup_s:.1f}s, peak RSS {run.peak_rss_mb:.0f} MB)"
                    )
                    runs.append(run)
                median = statistics.median(r.rate for r in runs)
                entry = {
                    "runs": [round(r.rate) for r in runs],
                    "median": round(median),
                    "ratio_to_raw": round(median / raw[codec], 3) if codec in raw else None,
                    "startup_s": [round(r.startup_s, 1) for r in runs],
                    "peak_rss_mb": [round(r.peak_rss_mb or 0) for r in runs],
                }
                report["worker"][f"{codec}/{guarantee}"] = entry
                if codec == "json" and guarantee == "at_least_once":
                    alo_json = median

    if "latency" not in skip:
        max_rate = alo_json or args.latency_max_rate
        report["latency"] = {"max_rate_basis": round(max_rate)}
        lat_topic = f"{run_id}-lat-in"
        d = Deployment(bootstrap, f"{run_id}-lat", tmp, lat_topic)
        asyncio.run(create_topics(bootstrap, [lat_topic], PARTITIONS))
        fractions = [0.25, 0.5]
        sizes_needed = [int(max_rate * f * args.latency_seconds) for f in fractions]
        warm = 500
        records = generate(
            warm + sum(sizes_needed), args.threads, seed=11, payload_bytes=PAYLOAD_BYTES
        )
        json_codec = JsonCodec()
        paced = [
            (str(r["event_id"]), str(r["thread_id"]).encode(), json_codec.encode(r))
            for r in records
        ]
        worker = d.worker(0).start()
        try:
            asyncio.run(
                produce(bootstrap, lat_topic, [(k, v) for _, k, v in paced[:warm]], PARTITIONS)
            )
            wait_for_records([worker], warm, 300)
            start = warm
            for fraction, size in zip(fractions, sizes_needed, strict=True):
                result = asyncio.run(
                    paced_latency(
                        bootstrap,
                        lat_topic,
                        f"{d.name}.outcomes",
                        paced[start : start + size],
                        max_rate * fraction,
                        warmup_s=min(5.0, args.latency_seconds / 5),
                    )
                )
                start += size
                report["latency"][f"{int(fraction * 100)}%"] = result
                log(f"latency at {fraction:.0%}: {result}")
            rss = worker.peak_rss_bytes()
            report["latency"]["peak_rss_mb"] = round(rss / 2**20) if rss else None
        finally:
            d.stop_all()

    if "recovery" not in skip:
        report["recovery"] = recovery(args, run_id, tmp, bootstrap, "at_least_once")
        if args.eos_recovery:
            report["recovery_eos"] = recovery(
                args, run_id, tmp, bootstrap, "exactly_once", local_only=True
            )

    if "scaling" not in skip:
        codec = codecs[0]
        rates = []
        for i in range(args.repeats):
            d = Deployment(bootstrap, f"{run_id}-two-{i}", tmp, inputs[codec], codec=codec)
            rates.append(worker_throughput(d, n, count=2).rate)
            log(f"two workers #{i + 1}: {rates[-1]:,.0f} records/s")
        two = statistics.median(rates)
        one = report.get("worker", {}).get(f"{codec}/at_least_once", {}).get("median")
        report["scaling"] = {
            "codec": codec,
            "one_worker": one,
            "two_workers_runs": [round(r) for r in rates],
            "two_workers": round(two),
            "speedup": round(two / one, 2) if one else None,
        }
        log(f"two workers: {two:,.0f} records/s (one: {one})")


def recovery(
    args: argparse.Namespace,
    run_id: str,
    tmp: Path,
    bootstrap: str,
    guarantee: str,
    local_only: bool = False,
) -> dict[str, Any]:
    tag = guarantee[:3]
    topic = f"{run_id}-rec-{tag}-in"
    asyncio.run(create_topics(bootstrap, [topic], PARTITIONS))
    d = Deployment(bootstrap, f"{run_id}-rec-{tag}", tmp, topic, guarantee=guarantee)
    records = recovery_workload(args.recovery_threads, args.recovery_extra, seed=23)
    codec = JsonCodec()
    log(f"recovery ({guarantee}): {len(records):,} records on {args.recovery_threads:,} threads")
    asyncio.run(produce(bootstrap, topic, encode(records, codec), PARTITIONS))
    out: dict[str, Any] = {"threads": args.recovery_threads, "records": len(records)}
    data = tmp / d.name / "data-0"
    build = worker_throughput_keep(d, data, len(records))
    out["build"] = build
    log(f"recovery ({guarantee}): state built: {build}")
    keys, logical = rocksdb_logical_bytes(data)
    on_disk = dir_bytes(data)
    out["state"] = {
        "keys": keys,
        "logical_bytes_per_thread": round(logical / max(1, keys)),
        "on_disk_bytes": on_disk,
        "on_disk_bytes_per_thread": round(on_disk / max(1, keys)),
    }
    log(f"recovery ({guarantee}): state {out['state']}")

    asyncio.run(produce(bootstrap, topic, encode(markers("local"), codec), PARTITIONS))
    out["local"] = time_to_first_record(WorkerProcess(d.env, data, tmp / d.name / "local.log"))
    log(f"recovery ({guarantee}) from local state: {out['local']}")
    if local_only:
        return out

    asyncio.run(produce(bootstrap, topic, encode(markers("empty"), codec), PARTITIONS))
    empty = tmp / d.name / "data-empty"
    out["changelog"] = time_to_first_record(WorkerProcess(d.env, empty, tmp / d.name / "empty.log"))
    log(f"recovery ({guarantee}) from the changelog: {out['changelog']}")

    cold_topic = f"{run_id}-cold-in"
    asyncio.run(create_topics(bootstrap, [cold_topic], PARTITIONS))
    asyncio.run(produce(bootstrap, cold_topic, encode(markers("cold"), codec), PARTITIONS))
    cold = Deployment(bootstrap, f"{run_id}-cold", tmp, cold_topic)
    out["cold_start_no_state"] = time_to_first_record(
        WorkerProcess(
            cold.env, tmp / cold.name / "data", tmp / cold.name.replace("/", "_") / "w.log"
        )
    )
    log(f"cold start, no state: {out['cold_start_no_state']}")
    return out


def worker_throughput_keep(d: Deployment, data: Path, expected: int) -> dict[str, Any]:
    """Process everything with one worker on `data`, then stop it cleanly (state kept)."""
    worker = WorkerProcess(d.env, data, tmp_log(d, data))
    worker.start()
    try:
        progress = wait_for_records([worker], expected, 1800)
        assert progress.first_at is not None and progress.done_at is not None
        rss = worker.peak_rss_bytes()
        return {
            "rate": round(expected / (progress.done_at - progress.first_at)),
            "peak_rss_mb": round(rss / 2**20, 1) if rss else None,
        }
    finally:
        worker.stop()


def tmp_log(d: Deployment, data: Path) -> Path:
    path = data.parent / "build.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def versions(how: str) -> dict[str, str]:
    kafka = f"{KAFKA_VERSION} ({how})" if how != "reused" else "(the broker given, reused)"
    out = {"python": platform.python_version(), "kafka": kafka}
    for dist in ("faust-streaming", "aiokafka", "rocksdict", "fastavro", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


# --- BENCHMARKS.md ------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def write_section(report: dict[str, Any]) -> None:
    w = report["workload"]
    lines = [
        SECTION,
        "",
        f"{w['records']:,} records over {w['threads']:,} threads ({w['mix']}, mean value "
        + ", ".join(f"{c} {b:.0f}" for c, b in w.get("mean_value_bytes", {}).items())
        + f" bytes), {w['partitions']} partitions, one broker. "
        f"Rates are the median of {w['repeats']} runs; the raw pipe (aiokafka consumer + "
        "producer, acks=all, linger 5 ms, one output per input, no state, no policy) is "
        "measured in the same run, and the worker is reported as a ratio to it. "
        f"Run `{report['command']}` ({report.get('duration_s', '?')} s). Raw numbers: "
        "`benchmarks/results/kafka.json`. Targets are reported, not asserted.",
        "",
    ]
    raw = report.get("raw_pipe", {})
    workers = report.get("worker", {})
    if raw or workers:
        lines += [
            "### Throughput (records/s)",
            "",
            "| | " + " | ".join(w["codecs"]) + " | target |",
            "|---|" + "---:|" * len(w["codecs"]) + "---|",
        ]
        lines.append(
            "| raw aiokafka pipe | "
            + " | ".join(_fmt(raw.get(c, {}).get("median")) for c in w["codecs"])
            + " | |"
        )
        agent = report.get("faust_agent", {})
        if agent:
            cells = [
                f"{e['median']:,} ({_fmt(e.get('ratio_to_raw'), '.1%')})"
                if (e := agent.get(c))
                else "n/a"
                for c in w["codecs"]
            ]
            lines.append(
                "| faust agent that only acks (ratio to raw): the ceiling of a faust worker | "
                + " | ".join(cells)
                + " | |"
            )
        for g, target in (("at_least_once", "alo_ratio"), ("exactly_once", "eos_ratio")):
            cells = []
            oks = []
            for c in w["codecs"]:
                e = workers.get(f"{c}/{g}")
                if e is None:
                    cells.append("n/a")
                    continue
                ratio = e.get("ratio_to_raw")
                cells.append(f"{e['median']:,} ({_fmt(ratio, '.1%')})")
                if ratio is not None:
                    oks.append(ratio >= TARGETS[target])
            verdict = _verdict(all(oks) if oks else None)
            lines.append(
                f"| worker, {g.replace('_', '-')} (ratio to raw) | "
                + " | ".join(cells)
                + f" | >= {TARGETS[target]:.0%}: {verdict} |"
            )
        lines.append("")
    lat = report.get("latency")
    if lat:
        lines += [
            "### End-to-end latency, at-least-once, JSON (input sent -> outcome received)",
            "",
            f"Paced producer; load as a share of the worker's at-least-once JSON rate "
            f"({lat['max_rate_basis']:,}/s); the first seconds of each step left out.",
            "",
            "| load | sent/s | samples | p50 ms | p99 ms | p99.9 ms | max ms | target |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key in ("25%", "50%"):
            r = lat.get(key)
            if not r:
                continue
            target = ""
            if key == "25%" and r["p99_ms"] is not None:
                target = f"p99 <= 20 ms: {_verdict(r['p99_ms'] <= TARGETS['p99_ms_25'])}"
            lines.append(
                f"| {key} | {r['achieved_send_rate']:,} | {r['samples']:,} | "
                f"{_fmt(r['p50_ms'], '.1f')} | {_fmt(r['p99_ms'], '.1f')} | "
                f"{_fmt(r['p999_ms'], '.1f')} | {_fmt(r['max_ms'], '.1f')} | {target} |"
            )
        lines.append("")
    rec = report.get("recovery")
    if rec:
        local = rec.get("local", {}).get("start_to_first_record_s")
        changelog = rec.get("changelog", {}).get("start_to_first_record_s")
        cold = rec.get("cold_start_no_state", {}).get("start_to_first_record_s")
        peak = max(
            (
                v
                for v in (
                    rec["build"].get("peak_rss_mb"),
                    rec.get("local", {}).get("peak_rss_mb"),
                    rec.get("changelog", {}).get("peak_rss_mb"),
                )
                if v is not None
            ),
            default=None,
        )
        rc = "recovery_changelog_s"
        st = rec["state"]
        lines += [
            f"### Recovery and memory, {rec['threads']:,} threads of state "
            f"({rec['records']:,} input records: one per thread, then the usual mix; "
            "at-least-once, JSON)",
            "",
            "| measurement | value | target |",
            "|---|---:|---|",
            f"| start -> first record, local RocksDB | {_fmt(local, '.1f')} s | <= 3 s: "
            f"{_verdict(None if local is None else local <= TARGETS['recovery_local_s'])} |",
            f"| start -> first record, empty data dir (changelog) | {_fmt(changelog, '.1f')} s "
            f"| <= 30 s: "
            f"{_verdict(None if changelog is None else changelog <= TARGETS[rc])} |",
            f"| start -> first record, no state at all (reference) | {_fmt(cold, '.1f')} s | |",
        ]
        eos = report.get("recovery_eos", {}).get("local", {}).get("start_to_first_record_s")
        if eos is not None:
            lines.append(
                f"| start -> first record, local RocksDB, exactly-once | {eos:.1f} s | (reported) |"
            )
        lines += [
            f"| peak RSS of the worker (build, restarts) | {_fmt(peak, '.0f')} MB | <= 400 MB: "
            f"{_verdict(None if peak is None else peak <= TARGETS['peak_rss_mb'])} |",
            f"| state per thread, RocksDB key + value | {st['logical_bytes_per_thread']:,} B | |",
            f"| state per thread, on disk | {st['on_disk_bytes_per_thread']:,} B | |",
            f"| processing rate while building the state | {rec['build']['rate']:,}/s | |",
            "",
        ]
    sc = report.get("scaling")
    if sc:
        lines += [
            "### One worker against two (same group, partitions split, same machine)",
            "",
            f"{sc['codec']}, at-least-once: one worker {_fmt(sc['one_worker'])}/s, two workers "
            f"{_fmt(sc['two_workers'])}/s (x{_fmt(sc['speedup'], '.2f')}; medians of "
            f"{len(sc.get('two_workers_runs', [1]))} runs).",
            "",
        ]
    m, v = report["machine"], report["versions"]
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; 1-minute load average "
        f"{report.get('load_average', {}).get('before', '?')} before the run (other jobs may "
        "share the machine: absolute numbers are noisy, the ratios are the figures to read).",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
    ]
    section = "\n".join(lines)
    replace_section(SECTION, section)


if __name__ == "__main__":
    raise SystemExit(main())
