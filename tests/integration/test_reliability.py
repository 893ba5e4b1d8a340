"""Fault scenarios: SIGKILLs mid-stream, a worker lost to another, a broker restart, bad input.

Every scenario ends with the oracle (tests/support/oracle.py: the committed input read back and run
through the worker's pure logic) compared with what the worker wrote: lost and mismatched must
be 0, identical duplicates are allowed only under at-least-once. Each prints its report line,
and appends it as JSON to $ORCHESTRAL_RELIABILITY_REPORT when set.

`make test` runs the short versions; `make reliability` the full ones (ORCHESTRAL_RELIABILITY=full).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from devtools import broker
from devtools.deployment import (
    Deployment,
    WorkerProcess,
    encode_inputs,
    free_port_pair,
    produce,
    read_all,
)
from devtools.workload import generate
from schemas.avro_codec import AvroCodec
from tests.support.oracle import Comparison, check_against_oracle

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

FULL = os.environ.get("ORCHESTRAL_RELIABILITY") == "full"
GUARANTEES = ["at_least_once", "exactly_once"]


def scale(short: int, full: int) -> int:
    return full if FULL else short


@dataclass
class Report:
    scenario: str
    guarantee: str
    inputs: int
    kills: int
    restarts: int
    result: Comparison

    def emit(self) -> None:
        line = {
            "scenario": self.scenario,
            "guarantee": self.guarantee,
            "full": FULL,
            "input_records": self.inputs,
            "kills": self.kills,
            "restarts": self.restarts,
            "identical_duplicates": self.result.identical_duplicates,
            "lost": len(self.result.lost),
            "mismatched": len(self.result.unexpected),
            "expected_outputs": self.result.expected,
        }
        print(json.dumps(line))
        path = os.environ.get("ORCHESTRAL_RELIABILITY_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(line) + "\n")


class Feeder(threading.Thread):
    """Produces records in chunks with pauses between them, so faults land mid-stream."""

    def __init__(self, deployment: Deployment, records: list[Any], chunks: int, pause: float):
        super().__init__(daemon=True)
        self.bootstrap = deployment.bootstrap
        self.topic = deployment.settings.events_topic
        self.values = encode_inputs(records)
        self.chunks, self.pause = chunks, pause
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            size = -(-len(self.values) // self.chunks)
            for start in range(0, len(self.values), size):
                asyncio.run(produce(self.bootstrap, self.topic, self.values[start : start + size]))
                time.sleep(self.pause)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 300) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the feeder did not finish"
        assert self.error is None, self.error


def wait_until_processing(worker: WorkerProcess, timeout: float = 120) -> None:
    """Until this incarnation's progress line shows handled records: it is mid-stream."""
    assert worker.proc is not None
    pattern = re.compile(rf"\[{worker.proc.pid}\] \[INFO\] progress: records in ([1-9]\d*)")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern.search(worker.log()):
            return
        assert worker.alive(), worker.log()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"worker {worker.proc.pid} handled nothing in {timeout} s")


def compare_with_oracle(deployment: Deployment, guarantee: str, timeout: float) -> Comparison:
    return asyncio.run(
        check_against_oracle(
            deployment, timeout=timeout, duplicates_allowed=guarantee == "at_least_once"
        )
    )


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_sigkill_mid_stream(deployment: Deployment, guarantee: str) -> None:
    """Records stream in while the worker is SIGKILLed at random moments and restarted."""
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    records = generate(scale(4_000, 50_000), scale(100, 1_000), seed=13)
    kills = scale(3, 5)
    rng = random.Random(5)
    # The stream lasts longer than the kill cycles (a restart takes seconds): every kill lands
    # while records are still arriving.
    feeder = Feeder(deployment, records, chunks=kills * 6, pause=scale(2, 4))
    worker = deployment.worker().start()
    feeder.start()
    for _ in range(kills):
        wait_until_processing(worker)
        time.sleep(rng.uniform(0.2, 3.0))
        worker.kill()
        worker.start()
    feeder.finish()
    result = compare_with_oracle(deployment, guarantee, timeout=scale(240, 600))
    Report("sigkill", guarantee, len(records), kills, kills, result).emit()


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_lost_worker_state_moves_to_the_other(deployment: Deployment, guarantee: str) -> None:
    """Two workers; one is SIGKILLed; the other takes its partitions, restoring their state
    from the changelog, and goes on."""
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    records = generate(scale(3_000, 20_000), scale(100, 500), seed=17)
    feeder = Feeder(deployment, records, chunks=10, pause=scale(1, 2))
    first, second = deployment.worker(0).start(), deployment.worker(1).start()
    feeder.start()
    wait_until_processing(first)
    wait_until_processing(second)
    first.kill()
    feeder.finish()
    result = compare_with_oracle(deployment, guarantee, timeout=scale(240, 600))
    assert second.alive() and second.starts == 1
    Report("worker lost, partitions moved", guarantee, len(records), 1, 0, result).emit()


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_worker_joining_under_load_takes_its_share_at_once(
    deployment: Deployment, guarantee: str
) -> None:
    """A second worker joins while the first works through a backlog: the first hands
    partitions over at once (records it had read but not handled are dropped, to be read
    again), not after the group's rebalance timeout (60 s), and nothing is lost."""
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    records = generate(scale(40_000, 120_000), scale(1_000, 5_000), seed=31)
    backlog = scale(30_000, 100_000)
    asyncio.run(
        produce(
            deployment.bootstrap,
            deployment.settings.events_topic,
            encode_inputs(records[:backlog]),
        )
    )
    # More input keeps arriving while the second worker joins, so it has records to handle
    # even on a machine fast enough to finish the backlog before the rebalance.
    feeder = Feeder(deployment, records[backlog:], chunks=20, pause=1)
    first = deployment.worker(0).start()
    wait_until_processing(first)
    second = deployment.worker(1).start()
    feeder.start()
    wait_until_processing(second, timeout=30)
    feeder.finish()
    result = compare_with_oracle(deployment, guarantee, timeout=scale(240, 600))
    assert first.alive() and first.starts == 1, first.log()[-3000:]
    assert second.alive() and second.starts == 1, second.log()[-3000:]
    Report("worker joined under load", guarantee, len(records), 0, 0, result).emit()


@pytest.fixture
def own_broker(tmp_path: Path) -> Any:
    """A broker of this test's own, so it can be stopped and restarted."""
    port = free_port_pair()
    data = tmp_path / "broker"
    info = broker.start(port, data_dir=data, timeout=180)
    try:
        yield port, data, info.bootstrap_servers
    finally:
        broker.stop(port, data_dir=data)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_broker_restart_mid_stream(own_broker: Any, tmp_path: Path, guarantee: str) -> None:
    """The broker stops and comes back while the worker has work: the worker reconnects on
    its own, never exits, and loses nothing."""
    port, data, bootstrap = own_broker
    deployment = Deployment(bootstrap, "t-broker-restart", tmp_path)
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    deployment.create_topics()
    records = generate(scale(3_000, 20_000), scale(100, 500), seed=19)
    half = len(records) // 2
    worker = deployment.worker().start()
    try:
        asyncio.run(
            produce(bootstrap, deployment.settings.events_topic, encode_inputs(records[:half]))
        )
        wait_until_processing(worker)
        broker.stop(port, data_dir=data)
        time.sleep(5)  # the worker sees the broker gone: failed fetches, sends, commits
        assert worker.alive(), worker.log()[-3000:]
        broker.start(port, data_dir=data, timeout=180)
        asyncio.run(
            produce(bootstrap, deployment.settings.events_topic, encode_inputs(records[half:]))
        )
        result = compare_with_oracle(deployment, guarantee, timeout=scale(240, 600))
        assert worker.alive() and worker.starts == 1, worker.log()[-3000:]
        Report("broker restart", guarantee, len(records), 0, 0, result).emit()
    finally:
        deployment.stop_all()


def bad_records(n: int, rng: random.Random) -> tuple[list[tuple[bytes | None, bytes | None]], int]:
    """`n` malformed records of every class; returns them and how many must reach the DLQ
    (a null payload is answered `invalid` and not dead-lettered, per the contract)."""
    avro = AvroCodec()
    valid = generate(n, 50, seed=rng.randrange(1 << 30))
    out: list[tuple[bytes | None, bytes | None]] = []
    answered_invalid = 0
    for i, record in enumerate(valid):
        key = str(record["thread_id"]).encode()
        body = json.dumps(record).encode()
        kind = i % 9
        if kind == 0:
            noise = rng.randbytes(rng.randrange(1, 200))
            # keep it undecodable: a leading 0x00 or "{" would be read as Avro or JSON framing
            value: bytes | None = b"\xff" + noise if noise[:1] in (b"\x00", b"{") else noise
        elif kind == 1:
            encoded = avro.encode(record)
            value = encoded[: rng.randrange(5, len(encoded) - 1)]
        elif kind == 2:
            value = b"\x07" + avro.encode(record)[1:]  # wrong magic byte
        elif kind == 3:
            value = json.dumps({**record, "type": "not_a_type"}).encode()
        elif kind == 4:
            value = json.dumps({k: v for k, v in record.items() if k != "timestamp"}).encode()
        elif kind == 5:
            key, value = b"someone-else", body  # key != thread_id
        elif kind == 6 and record["type"] in ("user_input", "external_event"):
            value = json.dumps({**record, "payload": None}).encode()
            answered_invalid += 1
        elif kind == 6:
            value = b'{"type": '
        elif kind == 7:
            value = None  # a tombstone
        else:
            value = body[: len(body) // 2]  # truncated JSON
        out.append((key, value))
    return out, n - answered_invalid


def test_bad_input_is_dead_lettered_and_valid_input_goes_on(deployment: Deployment) -> None:
    rng = random.Random(23)
    n = scale(450, 5_000)
    bad, dead_lettered = bad_records(n, rng)
    valid = encode_inputs(generate(n, scale(50, 500), seed=29))
    mixed: list[tuple[bytes | None, bytes | None]] = []
    for good, wrong in zip(valid, bad, strict=True):
        mixed.extend([good, wrong] if rng.random() < 0.5 else [wrong, good])
    # Near the broker's default maximum (1 MiB): an undecodable one goes to the DLQ unchanged
    # (its headers make it larger than the input), a valid one is processed (its store record
    # and its thread state wrap the payload).
    big_valid = {
        "type": "user_input",
        "thread_id": "big",
        "event_id": "big-1",
        "timestamp": "2026-11-24T00:00:00Z",
        "payload": "y" * 1_000_000,
    }
    mixed[len(mixed) // 2 : len(mixed) // 2] = [
        (b"big", b"{" + b" " * 1_040_000),
        *encode_inputs([big_valid]),
    ]
    dead_lettered += 1
    worker = deployment.worker().start()
    settings = deployment.settings
    asyncio.run(produce(deployment.bootstrap, settings.events_topic, mixed))
    # A value over the broker's maximum never reaches the topic: the producer is told.
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(_produce_oversized(deployment))
    result = asyncio.run(check_against_oracle(deployment, timeout=scale(240, 600)))
    dlq = asyncio.run(read_all(deployment.bootstrap, settings.dlq_topic))
    assert len(dlq) == dead_lettered
    assert any(value == b"{" + b" " * 1_040_000 for _, _, _, value, _ in dlq)
    for _, _, _, _, headers in dlq:
        found = dict(headers)
        assert found["error"], found
        assert found["source_topic"] == settings.events_topic.encode()
    assert worker.alive() and worker.starts == 1, worker.log()[-3000:]
    assert "Crashed" not in worker.log()  # faust restarts a crashed agent in place: none here
    Report("bad input", "at_least_once", len(mixed), 0, 0, result).emit()


async def _produce_oversized(deployment: Deployment) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=deployment.bootstrap, max_request_size=8 * 1024 * 1024
    )
    await producer.start()
    try:
        future = await producer.send(
            deployment.settings.events_topic, key=b"big", value=b"{" + b" " * (2 * 1024 * 1024)
        )
        await future
    finally:
        await producer.stop()


def test_an_input_whose_outputs_exceed_the_limit_is_dead_lettered(deployment: Deployment) -> None:
    """Two 600 KB payloads on one thread within a commit interval: the thread's state (it
    keeps the outputs of uncommitted records for replay) would pass 1 MiB, which the output
    topics refuse. The second input goes to the DLQ, the thread keeps its state, the
    partition goes on."""
    deployment.extra_env.update(
        {
            "ORCHESTRAL_MAX_OUTPUT_BYTES": str(1024 * 1024),
            "ORCHESTRAL_COMMIT_INTERVAL": "60",
            # Deadlines off: the records' logical time is long past; an expire would add outputs.
            "ORCHESTRAL_RUN_TIMEOUT": "0",
        }
    )
    deployment.create_topics()
    big = [
        {
            "type": "user_input",
            "thread_id": "big",
            "event_id": f"big-{n}",
            "timestamp": f"2026-11-24T00:00:0{n}Z",
            "payload": "y" * 600_000,
        }
        for n in (1, 2)
    ]
    after = {"type": "user_input", "thread_id": "big", "event_id": "small", "payload": "hi"}
    after["timestamp"] = "2026-11-24T00:00:03Z"
    worker = deployment.worker().start()
    settings = deployment.settings
    asyncio.run(produce(deployment.bootstrap, settings.events_topic, encode_inputs([*big, after])))
    deadline = time.monotonic() + 120
    outcomes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        outcomes = [
            json.loads(value or b"null")
            for _, _, _, value, _ in asyncio.run(
                read_all(deployment.bootstrap, settings.outcomes_topic)
            )
        ]
        if any(o.get("source_event_id") == "small" for o in outcomes):
            break
        time.sleep(1)
    answered = {o["source_event_id"]: o["status"] for o in outcomes if o["type"] == "outcome"}
    assert answered == {"big-1": "started", "small": "started"}, answered
    dlq = asyncio.run(read_all(deployment.bootstrap, settings.dlq_topic))
    assert len(dlq) == 1
    _, _, key, value, headers = dlq[0]
    assert (key, value) == encode_inputs([big[1]])[0]  # the raw input, unchanged
    assert b"OutputTooLarge" in dict(headers)["error"]
    assert worker.alive() and "Crashed" not in worker.log()
