"""Kafka plumbing for the benchmarks: a broker, topics, a bench deployment, progress, sizes.

The worker processes, producing and free ports are the deployment kit shared with the tests
(`devtools/deployment.py`). Kept apart from the measurement modules (`benchmarks/raw_pipe.py`,
`throughput.py`, ...) so the measurements read plainly. Everything a run creates on the broker
is named `bench-<run id>-...` and deleted at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools import broker as local_broker
from devtools.deployment import Deployment, WorkerProcess, free_port_pair


def answers(bootstrap: str, timeout: float = 2.0) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def kafka_broker(bootstrap: str | None) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, how we got it): the one given if it answers, else one we start on a
    free port with its own data dir, stopped again at the end."""
    if bootstrap and answers(bootstrap):
        yield bootstrap, "reused"
        return
    if bootstrap:
        print(f"bench: {bootstrap} does not answer; starting a broker of our own", flush=True)
    port = free_port_pair()
    data = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    info = local_broker.start(port, data_dir=data, timeout=180)
    try:
        yield info.bootstrap_servers, f"started on port {port} for this run"
    finally:
        local_broker.stop(port, data_dir=data)


# --- topics -------------------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        await admin.close()


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        for start in range(0, len(doomed), 50):
            await admin.delete_topics(doomed[start : start + 50])
        return doomed
    finally:
        await admin.close()


# --- worker processes ---------------------------------------------------------------------------


# How long a worker gets for a clean shutdown after SIGTERM before it is killed: a large store
# takes longer to close than the tests' 30 s.
STOP_TIMEOUT = 60.0


def bench_deployment(
    bootstrap: str,
    name: str,  # bench-<run>-<what>
    tmp: Path,
    events_topic: str,
    codec: str = "json",
    guarantee: str = "at_least_once",
    extra_env: dict[str, str] | None = None,
) -> Deployment:
    """One worker deployment on the broker over a shared input topic (`""`: its own): its own
    output topics, group (app id = `name`) and data dirs (under `tmp/name`); `extra_env` over
    the bench's settings."""
    return Deployment(
        bootstrap,
        name,
        tmp / name,
        extra_env={
            "ORCHESTRAL_CODEC": codec,
            "ORCHESTRAL_PROCESSING_GUARANTEE": guarantee,
            "ORCHESTRAL_PROGRESS_INTERVAL": "5",
            "ORCHESTRAL_CONNECT_TIMEOUT": "30",
            # Deadlines off: the workload's logical timestamps (devtools/workload.py) lie long
            # in the past, so with the default run timeout (3600 s) the deadline timer would
            # expire every interaction at its first tick and add its expire commands (and
            # their outputs) to the records a throughput run measures. The deadline bench
            # (benchmarks/deadlines.py) turns them on with current timestamps.
            "ORCHESTRAL_RUN_TIMEOUT": "0",
            **(extra_env or {}),
        },
        partitions=8,
        app_id=name,
        events_topic=events_topic,
        stop_timeout=STOP_TIMEOUT,
    )


@dataclass
class Progress:
    """records_in of a set of workers over time, polled: when the first record was handled and
    when the last one was."""

    first_at: float | None = None  # monotonic
    done_at: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)


def wait_for_records(
    workers: Sequence[WorkerProcess],
    target: int,
    timeout: float,
    poll: float = 0.1,
) -> Progress:
    """Poll the workers' metrics until together they have handled `target` records."""
    progress = Progress()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [w.records_in() for w in workers]
        now = time.monotonic()
        total = sum(c or 0 for c in counts)
        progress.samples.append((now, total))
        if total > 0 and progress.first_at is None:
            progress.first_at = now
        if total >= target:
            progress.done_at = now
            return progress
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker died:\n{w.log_tail()}")
        time.sleep(poll)
    raise TimeoutError(
        f"{target} records not handled in {timeout:.0f}s (at {progress.samples[-1][1]})"
        + "".join(f"\n--- {w.log_path}\n{w.log_tail(15)}" for w in workers)
    )


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def rocksdb_logical_bytes(data_dir: Path) -> tuple[int, int]:
    """(keys, key+value bytes) over every RocksDB table under a stopped worker's data dir."""
    from rocksdict import AccessType, Options, Rdict

    keys = size = 0
    for db in sorted(data_dir.rglob("*.db")):
        if not db.is_dir():
            continue
        rdict: Any = Rdict(
            str(db), options=Options(raw_mode=True), access_type=AccessType.read_only()
        )
        try:
            for k, v in rdict.items():
                if isinstance(k, bytes) and k.startswith(b"__faust"):
                    continue
                keys += 1
                size += len(k) + len(v if isinstance(v, bytes) else str(v).encode())
        finally:
            rdict.close()
    return keys, size
