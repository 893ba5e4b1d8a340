"""Kafka plumbing for the benchmarks: a broker, worker processes, producing, topics, metrics.

Kept apart from the measurement modules (`benchmarks/raw_pipe.py`, `throughput.py`, ...) so the
measurements read plainly. Everything a run creates on the broker is named `bench-<run id>-...`
and deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devtools import broker as local_broker

ROOT = Path(__file__).resolve().parents[1]

# The worker's producer settings (processors/worker/app.py): acks=all (faust's default),
# linger 5 ms.
ACKS = "all"
LINGER_MS = 5


def free_port(pair: bool = False) -> int:
    """A free port; with `pair`, one whose successor is free too (a broker's controller)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not pair:
            return port
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


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
    port = free_port(pair=True)
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


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], partitions: int
) -> None:
    """Produce (key, value) pairs, each to the partition the worker's topics would use (the
    default partitioner, murmur2 of the key): the load, as fast as the client goes."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=ACKS, linger_ms=LINGER_MS, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, key=key, value=value))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# --- worker processes ---------------------------------------------------------------------------


@dataclass
class Deployment:
    """One worker deployment on the broker: its own topics, group (app id) and data dirs."""

    bootstrap: str
    name: str  # bench-<run>-<what>
    tmp: Path
    events_topic: str
    codec: str = "json"
    guarantee: str = "at_least_once"
    partitions: int = 8
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def app_id(self) -> str:
        return self.name

    @property
    def changelog(self) -> str:
        return f"{self.app_id}-threads-changelog"

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ORCHESTRAL_APP_ID": self.app_id,
            "ORCHESTRAL_EVENTS_TOPIC": self.events_topic,
            "ORCHESTRAL_STORE_TOPIC": f"{self.name}.store",
            "ORCHESTRAL_OUTCOMES_TOPIC": f"{self.name}.outcomes",
            "ORCHESTRAL_DLQ_TOPIC": f"{self.name}.dlq",
            "ORCHESTRAL_PARTITIONS": str(self.partitions),
            "ORCHESTRAL_CODEC": self.codec,
            "ORCHESTRAL_PROCESSING_GUARANTEE": self.guarantee,
            "ORCHESTRAL_SESSION_TIMEOUT": "6",
            "ORCHESTRAL_PROGRESS_INTERVAL": "5",
            "ORCHESTRAL_CONNECT_TIMEOUT": "30",
        }

    def worker(self, index: int = 0, data_dir: Path | None = None) -> WorkerProcess:
        data = data_dir or self.tmp / self.name / f"data-{index}"
        log = self.tmp / self.name / f"worker-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        process = WorkerProcess(self.env, data, log)
        self.workers.append(process)
        return process

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


class WorkerProcess:
    def __init__(self, env: dict[str, str], data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            **env,
            "ORCHESTRAL_DATA_DIR": str(data_dir),
            "ORCHESTRAL_WEB_PORT": str(self.port),
        }
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def records_in(self) -> int | None:
        """The worker's `orchestral_records_in_total`, or None while its web server is not up."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        match = re.search(r"^orchestral_records_in_total ([0-9.e+]+)$", text, re.M)
        return int(float(match.group(1))) if match else None

    def peak_rss_bytes(self) -> int | None:
        """VmHWM: the process's peak resident set size so far (Linux)."""
        return self._status_bytes("VmHWM:")

    def rss_bytes(self) -> int | None:
        return self._status_bytes("VmRSS:")

    def _status_bytes(self, field: str) -> int | None:
        """A size field of /proc/PID/status, in bytes (None once the process is gone)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


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
