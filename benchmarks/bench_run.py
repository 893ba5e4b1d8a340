"""One run of the Kafka bench: where it lives, its shared sizes, and its pre-filled input topics.

Every measurement module takes a `BenchRun`: the broker, the run id every topic and group is
named after (`bench-<run id>-...`, deleted at the end), and the run's temp dir (data dirs, logs).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.kafka_io import create_topics
from devtools.deployment import produce
from devtools.workload import generate
from schemas.avro_codec import AvroCodec
from schemas.codec import Codec
from schemas.json_codec import JsonCodec

PAYLOAD_BYTES = 500  # -> about 400 bytes per JSON input record on the workload's mix
PARTITIONS = 8


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] bench: {message}", flush=True)


def current_timestamp(ms_after: int = 0) -> str:
    """Now (wall clock) plus `ms_after` milliseconds, in the records' canonical form."""
    at = datetime.now(UTC) + timedelta(milliseconds=ms_after)
    millis = at.microsecond // 1000
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{millis:03d}" if millis else "") + "Z"


def codec_of(name: str) -> Codec:
    return AvroCodec() if name == "avro" else JsonCodec()


def encode(records: list[dict[str, Any]], codec: Codec) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: the thread id as the key, as the worker's topics are keyed."""
    return [(str(r["thread_id"]).encode(), codec.encode(r)) for r in records]


@dataclass(frozen=True)
class BenchRun:
    bootstrap: str
    run_id: str
    tmp: Path

    def topic(self, suffix: str) -> str:
        """Create the topic `<run id>-<suffix>` with the bench's partitions; its name."""
        name = f"{self.run_id}-{suffix}"
        asyncio.run(create_topics(self.bootstrap, [name], PARTITIONS))
        return name

    def produce(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        asyncio.run(produce(self.bootstrap, topic, records, max_batch_size=256 * 1024))


@dataclass(frozen=True)
class Inputs:
    """The input topics, one per codec, each pre-filled with the same workload."""

    records: int
    topics: dict[str, str]  # codec -> topic
    mean_value_bytes: dict[str, float]  # codec -> mean encoded size of a value


def fill_inputs(run: BenchRun, codecs: list[str], records: int, threads: int) -> Inputs:
    """Generate `records` on `threads` threads and produce them once per codec."""
    workload = generate(records, threads, payload_bytes=PAYLOAD_BYTES)
    topics: dict[str, str] = {}
    sizes: dict[str, float] = {}
    for codec in codecs:
        encoded = encode(workload, codec_of(codec))
        sizes[codec] = round(statistics.mean(len(v) for _, v in encoded), 1)
        topic = topics[codec] = run.topic(f"in-{codec}")
        log(f"producing {len(encoded):,} {codec} records ({sizes[codec]} bytes mean) to {topic}")
        run.produce(topic, encoded)
    return Inputs(records, topics, sizes)


def mb(rss: int | None, digits: int | None = 1) -> float | None:
    """A peak RSS in MB for the report, to `digits` (None when it could not be read)."""
    return round(rss / 2**20, digits) if rss else None


def repeated(rates: list[float]) -> dict[str, Any]:
    """The report's entry for a rate measured `--repeats` times: every run and the median."""
    return {"runs": [round(r) for r in rates], "median": round(statistics.median(rates))}
