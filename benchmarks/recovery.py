"""Recovery and memory: how long a worker takes to handle a record again, with much state.

A deployment first builds `--recovery-threads` threads of state (one user input each, then
`--recovery-extra` records of the usual mix), is stopped cleanly, and the state is sized (RocksDB
keys + values, bytes on disk). Then, each time with new marker threads to handle at once:
process start -> first record handled, from the local RocksDB and from an empty data dir (the
changelog), and a cold start with no state at all as the reference. Peak RSS of every process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.bench_run import PAYLOAD_BYTES, BenchRun, encode, log, mb
from benchmarks.kafka_io import (
    bench_deployment,
    dir_bytes,
    rocksdb_logical_bytes,
    wait_for_records,
)
from devtools.deployment import Deployment, WorkerProcess
from devtools.workload import generate
from schemas.json_codec import JsonCodec


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
    """Start `worker`; seconds from process start to its first record handled, and peak RSS."""
    worker.start()
    try:
        progress = wait_for_records([worker], 1, timeout, poll=0.05)
        assert progress.first_at is not None
        return {
            "start_to_first_record_s": round(progress.first_at - worker.started_at, 2),
            "peak_rss_mb": mb(worker.peak_rss_bytes()),
        }
    finally:
        worker.stop()


def build_state(d: Deployment, data: Path, expected: int) -> dict[str, Any]:
    """Process everything with one worker on `data`, then stop it cleanly (state kept)."""
    log_path = data.parent / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = WorkerProcess(d.env, data, log_path, stop_timeout=d.stop_timeout)
    worker.start()
    try:
        progress = wait_for_records([worker], expected, 1800)
        assert progress.first_at is not None and progress.done_at is not None
        return {
            "rate": round(expected / (progress.done_at - progress.first_at)),
            "peak_rss_mb": mb(worker.peak_rss_bytes()),
        }
    finally:
        worker.stop()


def state_size(data: Path) -> dict[str, Any]:
    """The state a stopped worker left in `data`: keys, bytes per thread logical and on disk."""
    keys, logical = rocksdb_logical_bytes(data)
    on_disk = dir_bytes(data)
    return {
        "keys": keys,
        "logical_bytes_per_thread": round(logical / max(1, keys)),
        "on_disk_bytes": on_disk,
        "on_disk_bytes_per_thread": round(on_disk / max(1, keys)),
    }


def measure_recovery(
    run: BenchRun, threads: int, extra: int, guarantee: str, local_only: bool = False
) -> dict[str, Any]:
    """Build the state under `guarantee`, size it, then time recovery from the local RocksDB;
    unless `local_only`, also from an empty data dir (the changelog) and a cold start."""
    tag = guarantee[:3]
    topic = run.topic(f"rec-{tag}-in")
    d = bench_deployment(
        run.bootstrap, f"{run.run_id}-rec-{tag}", run.tmp, topic, guarantee=guarantee
    )
    records = recovery_workload(threads, extra, seed=23)
    codec = JsonCodec()
    log(f"recovery ({guarantee}): {len(records):,} records on {threads:,} threads")
    run.produce(topic, encode(records, codec))
    out: dict[str, Any] = {"threads": threads, "records": len(records)}
    home = run.tmp / d.name
    data = home / "data-0"
    out["build"] = build_state(d, data, len(records))
    log(f"recovery ({guarantee}): state built: {out['build']}")
    out["state"] = state_size(data)
    log(f"recovery ({guarantee}): state {out['state']}")

    run.produce(topic, encode(markers("local"), codec))
    out["local"] = time_to_first_record(
        WorkerProcess(d.env, data, home / "local.log", stop_timeout=d.stop_timeout)
    )
    log(f"recovery ({guarantee}) from local state: {out['local']}")
    if local_only:
        return out

    run.produce(topic, encode(markers("empty"), codec))
    empty = WorkerProcess(
        d.env, home / "data-empty", home / "empty.log", stop_timeout=d.stop_timeout
    )
    out["changelog"] = time_to_first_record(empty)
    log(f"recovery ({guarantee}) from the changelog: {out['changelog']}")

    cold_topic = run.topic("cold-in")
    run.produce(cold_topic, encode(markers("cold"), codec))
    cold = bench_deployment(run.bootstrap, f"{run.run_id}-cold", run.tmp, cold_topic)
    cold_worker = WorkerProcess(
        cold.env,
        run.tmp / cold.name / "data",
        run.tmp / cold.name.replace("/", "_") / "w.log",
        stop_timeout=cold.stop_timeout,
    )
    out["cold_start_no_state"] = time_to_first_record(cold_worker)
    log(f"cold start, no state: {out['cold_start_no_state']}")
    return out
