"""The deployment kit shared by the integration tests and the benchmarks: worker processes on a
broker, each deployment with its own topics, group and data dirs, and the Kafka I/O around them
(producing, reading a topic back, deleting topics, free ports)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import Settings
from processors.kafka.topics import ensure_topics
from schemas.json_codec import JsonCodec

ROOT = Path(__file__).resolve().parents[1]

# The worker's producer settings (processors/worker/app.py): acks=all (faust's default),
# linger 5 ms.
ACKS = "all"
LINGER_MS = 5


@dataclass
class Deployment:
    """One isolated deployment on a broker: its own topics, group and data dirs.

    Its topics are `<name>.events` (unless `events_topic` names a shared input), `<name>.store`,
    `<name>.outcomes` and `<name>.dlq`; its group is `os-<name>` unless `app_id` is given.
    Worker `i` keeps its data in `<tmp>/data-<i>` and logs to `<tmp>/worker-<i>.log`."""

    bootstrap: str
    name: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 4
    app_id: str = ""
    events_topic: str = ""
    stop_timeout: float = 30
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app_id = self.app_id or f"os-{self.name}"
        self.events_topic = self.events_topic or f"{self.name}.events"

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
            "ORCHESTRAL_SESSION_TIMEOUT": "6",
            "ORCHESTRAL_PROGRESS_INTERVAL": "2",
            "ORCHESTRAL_CONNECT_TIMEOUT": "20",
            **self.extra_env,
        }

    @property
    def settings(self) -> Settings:
        overrides = {k.removeprefix("ORCHESTRAL_").lower(): v for k, v in self.env.items()}
        overrides["bootstrap_servers"] = overrides.pop("kafka_bootstrap_servers")
        return Settings.model_validate(overrides)

    def create_topics(self) -> None:
        """What the worker does at start; done first so records can be produced before it."""
        asyncio.run(ensure_topics(self.settings))

    def worker(self, index: int = 0, data_dir: Path | None = None) -> WorkerProcess:
        data = data_dir or self.tmp / f"data-{index}"
        log = self.tmp / f"worker-{index}.log"
        process = WorkerProcess(self.env, data, log, stop_timeout=self.stop_timeout)
        self.workers.append(process)
        return process

    def executor(
        self, index: int, function: str, api: WorkerProcess | None = None, **env: str
    ) -> WorkerProcess:
        """`orchestral-stream executor FUNCTION` in the deployment's executor group; its turns
        read history from `api`'s thread API. Logs to `<tmp>/executor-<i>.log`."""
        extra = {"ORCHESTRAL_EXECUTOR_GROUP": f"{self.app_id}-executors", **env}
        if api is not None:
            extra["ORCHESTRAL_API_URL"] = f"http://127.0.0.1:{api.port}"
        process = WorkerProcess(
            {**self.env, **extra},
            self.tmp / f"executor-data-{index}",
            self.tmp / f"executor-{index}.log",
            stop_timeout=self.stop_timeout,
            command=["executor", function],
        )
        self.workers.append(process)
        return process

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


class WorkerProcess:
    """`processors.cli worker` (or another command) as a child process, its web server on a
    free port of its own."""

    def __init__(
        self,
        env: dict[str, str],
        data_dir: Path,
        log: Path,
        *,
        stop_timeout: float = 30,
        command: list[str] | None = None,
    ) -> None:
        self.command = command or ["worker"]
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            **env,
            "ORCHESTRAL_DATA_DIR": str(data_dir),
            "ORCHESTRAL_WEB_PORT": str(self.port),
        }
        self.log_path = log
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.started_at = 0.0  # monotonic, of the last start

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", *self.command],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` (default: `stop_timeout`); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log().splitlines()[-lines:])
        except OSError:
            return ""

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


# --- free ports -----------------------------------------------------------------------------


def free_ports(count: int, *, pair: bool = False) -> list[int]:
    """`count` distinct free loopback ports, held open together so the kernel can't hand one out
    twice; with `pair`, the first two are consecutive (a broker's controller listens on p + 1)."""
    for _ in range(100):
        socks: list[socket.socket] = []
        try:
            first = socket.socket()
            socks.append(first)
            first.bind(("127.0.0.1", 0))
            ports = [int(first.getsockname()[1])]
            if pair:
                if ports[0] >= 65000:
                    continue
                second = socket.socket()
                socks.append(second)
                second.bind(("127.0.0.1", ports[0] + 1))
                ports.append(ports[0] + 1)
            while len(ports) < count:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", 0))
                ports.append(int(sock.getsockname()[1]))
            return ports[:count]
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free ports")


def free_port() -> int:
    return free_ports(1)[0]


def free_port_pair() -> int:
    """A port p with p+1 free too (the broker's controller listens on p+1)."""
    return free_ports(2, pair=True)[0]


# --- Kafka I/O ------------------------------------------------------------------------------


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    max_batch_size: int = 16384,
) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order, each to the partition the worker's topics would use
    (the default partitioner, murmur2 of the key), with the worker's producer settings (acks=all,
    linger 5 ms); return each one's (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=ACKS, linger_ms=LINGER_MS, max_batch_size=max_batch_size
    )
    await producer.start()
    try:
        positions: list[tuple[int, int]] = []
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, key=key, value=value))
            if len(futures) >= 20_000:  # bounded: a benchmark's load is millions of records
                positions.extend((m.partition, m.offset) for m in await asyncio.gather(*futures))
                futures.clear()
        positions.extend((m.partition, m.offset) for m in await asyncio.gather(*futures))
        return positions
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str, topic: str, *, isolation: str = "read_committed"
) -> list[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Every record of `topic` up to its current end: (partition, offset, key, value, headers)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()
        from aiokafka.structs import TopicPartition

        tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        while not await _at_end(consumer, ends):
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for messages in batch.values():
                out.extend(
                    (m.partition, m.offset, m.key, m.value, list(m.headers or ())) for m in messages
                )
        return out
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


def encode_inputs(records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """Input records as the producer of the events topic writes them: keyed by thread, JSON."""
    codec = JsonCodec()
    return [(str(r["thread_id"]).encode(), codec.encode(r)) for r in records]
