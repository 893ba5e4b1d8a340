"""Driving a real worker process against a real broker, and checking it against `replay`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
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


@dataclass
class Deployment:
    """One isolated deployment on the shared broker: its own topics, group and data dirs."""

    bootstrap: str
    name: str
    tmp: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 4
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ORCHESTRAL_APP_ID": f"os-{self.name}",
            "ORCHESTRAL_EVENTS_TOPIC": f"{self.name}.events",
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
        process = WorkerProcess(self.env, data, self.tmp / f"worker-{index}.log", index)
        self.workers.append(process)
        return process

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


class WorkerProcess:
    def __init__(self, env: dict[str, str], data_dir: Path, log: Path, index: int) -> None:
        self.env = {
            **os.environ,
            **env,
            "ORCHESTRAL_DATA_DIR": str(data_dir),
            "ORCHESTRAL_WEB_PORT": str(free_port()),
        }
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int | None:
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

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port p with p+1 free too (the broker's controller listens on p+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


# --- Kafka I/O ------------------------------------------------------------------------------


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Produce (key, value) pairs in order; return each one's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        return [(m.partition, m.offset) for m in await asyncio.gather(*futures)]
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
    codec = JsonCodec()
    return [(str(r["thread_id"]).encode(), codec.encode(r)) for r in records]
