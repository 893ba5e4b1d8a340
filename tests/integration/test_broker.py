"""The local Kafka broker manager against a real broker on free loopback ports.

The first run downloads Kafka's jars through Maven into the user cache (~15 s); later runs start
the broker in a few seconds. The tests share one broker and run in file order: the last one
stops it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import broker
from devtools.deployment import free_ports

pytestmark = pytest.mark.integration

if shutil.which("java") is None or shutil.which("mvn") is None:
    pytest.skip("the local broker needs java and mvn on PATH", allow_module_level=True)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerInfo]:
    port, controller_port = free_ports(2)
    data_dir = tmp_path_factory.mktemp("broker")
    info = broker.start(port, data_dir=data_dir, controller_port=controller_port, timeout=60)
    try:
        yield info
    finally:
        broker.stop(port, data_dir)  # no-op when the last test already stopped it


def test_start_returns_a_running_broker(running: broker.BrokerInfo) -> None:
    assert not running.already_running
    assert running.version == broker.KAFKA_VERSION
    assert running.bootstrap_servers == f"127.0.0.1:{running.port}"
    assert (running.data_dir / "broker.pid").read_text().strip() == str(running.pid)


def test_second_start_is_idempotent_and_quick(running: broker.BrokerInfo) -> None:
    began = time.monotonic()
    again = broker.start(running.port, data_dir=running.data_dir)
    assert time.monotonic() - began < 3.0
    assert again.already_running
    assert (again.pid, again.cluster_id) == (running.pid, running.cluster_id)


def test_status_reports_running(
    running: broker.BrokerInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    st = broker.status(running.port, running.data_dir)
    assert st.running and st.ready
    assert (st.pid, st.version, st.log_path) == (running.pid, running.version, running.log_path)
    assert st.log_path.is_file()

    args = ["status", "--port", str(running.port), "--data-dir", str(running.data_dir)]
    assert broker.main(args) == 0
    assert "is running" in capsys.readouterr().out


def test_produce_consume_round_trip(running: broker.BrokerInfo) -> None:
    sent = [f"message-{i}".encode() for i in range(20)]
    received = asyncio.run(_round_trip(running.bootstrap_servers, sent))
    assert sorted(received) == sorted(sent)


async def _round_trip(bootstrap: str, values: list[bytes]) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"broker-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # auto.create.topics.enable=false: the topic has to be created explicitly
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=str(i).encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    received: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while len(received) < len(values) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            received += [rec.value for recs in batches.values() for rec in recs]
    finally:
        await consumer.stop()
    return received


def test_stop_stops_and_is_idempotent(running: broker.BrokerInfo) -> None:
    assert broker.stop(running.port, running.data_dir) == running.pid
    st = broker.status(running.port, running.data_dir)
    assert not st.running and st.pid is None
    assert not (running.data_dir / "broker.pid").exists()
    assert broker.stop(running.port, running.data_dir) is None
    with socket.socket() as sock:  # the client port is released
        sock.bind((broker.HOST, running.port))


def test_data_dir_defaults_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORCHESTRAL_BROKER_DATA", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert broker.default_data_dir(9999) == tmp_path / "state" / "orchestral-stream" / "broker-9999"
    monkeypatch.setenv("ORCHESTRAL_BROKER_DATA", str(tmp_path / "mine"))
    assert broker.default_data_dir(9999) == tmp_path / "mine"
    monkeypatch.setenv("ORCHESTRAL_BROKER_CACHE", str(tmp_path / "cache"))
    assert broker.cache_dir("4.4.0") == tmp_path / "cache" / "kafka-4.4.0"
