"""Local state that outlived its cluster or topic never swallows new records (contract v2,
"Local state that does not belong to the topic"); records on the wrong partition are forwarded.

Before: with the data dir kept and the broker wiped, 3 of 3 new records of known threads were
taken for replays and produced nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from devtools import broker
from devtools.deployment import (
    Deployment,
    delete_topics,
    encode_inputs,
    free_port_pair,
    produce,
    read_all,
)
from processors.worker.cluster_identity import current_identity
from processors.worker.handler import home_partition
from schemas.codec import InputDecoder

pytestmark = pytest.mark.integration

THREADS = [f"thread-{i}" for i in range(6)]
GUARANTEES = ["at_least_once", "exactly_once"]


def messages(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "user_input",
            "thread_id": t,
            "payload": {"message": tag},
            "event_id": f"{tag}-{t}",
            "timestamp": "2026-12-01T10:00:00Z",
        }
        for t in THREADS
    ]


def restart_wiped(port: int, broker_dir: Path) -> None:
    """Wipe the broker's data dir and start it again: a new cluster, every topic empty."""
    shutil.rmtree(broker_dir)
    deadline = time.monotonic() + 60
    while True:
        try:
            broker.start(port, data_dir=broker_dir, timeout=180)
            return
        except broker.BrokerError:  # its ports can take a moment to be free again
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def send(deployment: Deployment, records: list[dict[str, Any]]) -> None:
    asyncio.run(
        produce(deployment.bootstrap, deployment.settings.events_topic, encode_inputs(records))
    )


async def answers(
    deployment: Deployment, records: list[dict[str, Any]], timeout: float = 60
) -> dict[str, list[dict[str, Any]]]:
    """The outcomes of `records` by event id, once each has one (or time runs out)."""
    wanted = {str(r["event_id"]) for r in records}
    decoder = InputDecoder()
    deadline = time.monotonic() + timeout
    found: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        found = {}
        for *_, value, _ in await read_all(
            deployment.bootstrap, deployment.settings.outcomes_topic
        ):
            record = decoder.decode_value(value)
            if record.get("type") == "outcome" and record["source_event_id"] in wanted:
                found.setdefault(record["source_event_id"], []).append(record)
        if set(found) == wanted:
            return found
        await asyncio.sleep(0.5)
    return found


def assert_all_started(deployment: Deployment, records: list[dict[str, Any]]) -> None:
    found = asyncio.run(answers(deployment, records))
    missing = {str(r["event_id"]) for r in records} - set(found)
    assert not missing, f"no outcome for {sorted(missing)}"
    assert all(len(v) == 1 for v in found.values()), found  # one outcome each
    assert {v[0]["status"] for v in found.values()} == {"started"}


async def store_seqs(deployment: Deployment) -> dict[str, list[int]]:
    decoder = InputDecoder()
    seqs: dict[str, list[int]] = {}
    for *_, value, _ in await read_all(deployment.bootstrap, deployment.settings.store_topic):
        record = decoder.decode_value(value)
        seqs.setdefault(record["thread_id"], []).append(record["seq"])
    return seqs


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_broker_wiped_under_a_kept_data_dir(tmp_path: Path, guarantee: str) -> None:
    port = free_port_pair()
    broker_dir = tmp_path / "broker"
    info = broker.start(port, data_dir=broker_dir, timeout=180)
    deployment = Deployment(info.bootstrap_servers, "wiped", tmp_path)
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    try:
        deployment.create_topics()
        worker = deployment.worker().start()
        first = messages("before")
        send(deployment, first)
        assert_all_started(deployment, first)

        # The broker goes away under the running worker, which must still stop on SIGTERM.
        broker.stop(port, data_dir=broker_dir)
        asked = time.monotonic()
        code = worker.stop(timeout=30)
        assert time.monotonic() - asked < 15, f"stopped after {time.monotonic() - asked:.1f}s"
        assert code in (0, 75), worker.log()[-3000:]

        restart_wiped(port, broker_dir)
        deployment.create_topics()
        worker.start()
        second = messages("after")
        send(deployment, second)
        assert_all_started(deployment, second)
        assert "does not belong to this cluster" in worker.log()
    finally:
        deployment.stop_all()
        broker.stop(port, data_dir=broker_dir)


def test_broker_wiped_under_a_running_worker(tmp_path: Path) -> None:
    """The worker sees the new cluster at the first record it reads again, exits 75 before that
    batch is acked, and its restart discards the old state: every new record is answered."""
    port = free_port_pair()
    broker_dir = tmp_path / "broker"
    info = broker.start(port, data_dir=broker_dir, timeout=180)
    deployment = Deployment(info.bootstrap_servers, "wiped-live", tmp_path)
    try:
        deployment.create_topics()
        worker = deployment.worker().start()
        first = messages("before")
        send(deployment, first)
        assert_all_started(deployment, first)

        broker.stop(port, data_dir=broker_dir)
        restart_wiped(port, broker_dir)
        deployment.create_topics()
        second = messages("after")
        send(deployment, second)
        deadline = time.monotonic() + 60
        while worker.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.stop() == 75, worker.log()[-3000:]
        assert "the cluster changed under the running worker" in worker.log()
        worker.start()  # as a supervisor would
        assert_all_started(deployment, second)
    finally:
        deployment.stop_all()
        broker.stop(port, data_dir=broker_dir)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_events_topic_deleted_and_recreated(deployment: Deployment, guarantee: str) -> None:
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    worker = deployment.worker().start()
    first = messages("before")
    send(deployment, first)
    assert_all_started(deployment, first)
    assert worker.stop() == 0

    _recreate(deployment)
    worker.start()
    second = messages("after")  # at the offsets the first ones had
    send(deployment, second)
    assert_all_started(deployment, second)
    assert "does not belong to this cluster" in worker.log()
    # The threads' states were restored from the changelog: their histories go on.
    seqs = asyncio.run(store_seqs(deployment))
    assert all(seqs[t] == [1, 2] for t in THREADS), seqs


def _recreate(deployment: Deployment) -> None:
    """Delete the events topic and create it again, and wait until the new one is there:
    records produced while the old one is still being deleted would go with it."""
    topic = deployment.settings.events_topic
    before = asyncio.run(current_identity(deployment.settings)).topic_ids[topic]
    asyncio.run(delete_topics(deployment.bootstrap, [topic]))
    deadline = time.monotonic() + 60
    while True:
        try:
            deployment.create_topics()
            now = asyncio.run(current_identity(deployment.settings)).topic_ids.get(topic)
        except Exception:  # still being deleted
            now = None
        if now not in (None, before):
            return
        assert time.monotonic() < deadline, "the events topic was not recreated within 60 s"
        time.sleep(0.5)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_records_on_the_wrong_partition_are_forwarded(
    deployment: Deployment, guarantee: str
) -> None:
    """Produced with librdkafka's default partitioner (consistent_random, CRC32 of the key):
    before, 24 of 24 records were handled but `history` found 4 of the 24 threads."""
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    worker = deployment.worker().start()
    records = [{**r, "thread_id": f"rdk-{i}"} for i, r in enumerate(messages("x") * 4)]
    for i, r in enumerate(records):
        r["event_id"] = f"rdk-{i}"
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": deployment.bootstrap, "partitioner": "consistent_random"}
    )
    for key, value in encode_inputs(records):
        producer.produce(deployment.settings.events_topic, value=value, key=key)
    assert producer.flush(30) == 0
    found = asyncio.run(answers(deployment, records))
    assert set(found) == {r["event_id"] for r in records}
    assert all(len(v) == 1 for v in found.values()), found

    partitions = deployment.partitions
    events = asyncio.run(read_all(deployment.bootstrap, deployment.settings.events_topic))
    misplaced = [
        (p, k) for p, _, k, _, h in events if k and not h and home_partition(k, partitions) != p
    ]
    assert misplaced, "the producer put every record on its murmur2 partition: nothing tested"
    # Every thread's store records are on its own partition, and each was handled once there.
    for p, _, key, _, _ in asyncio.run(
        read_all(deployment.bootstrap, deployment.settings.store_topic)
    ):
        assert key is not None and home_partition(key, partitions) == p
    port = worker.env["ORCHESTRAL_WEB_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        metrics = page.read().decode()
    assert f"orchestral_rerouted_total {float(len(misplaced))}" in metrics
