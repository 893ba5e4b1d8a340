"""A real Apache Kafka broker for the integration tests, started and stopped by the test run.

Set ORCHESTRAL_TEST_BOOTSTRAP=host:port to use a broker that is already running instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from processors import broker
from tests.integration.harness import Deployment, delete_topics


def _free_port_pair() -> int:
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


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("ORCHESTRAL_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    port = _free_port_pair()
    data = tmp_path_factory.mktemp("broker")
    info = broker.start(port, data_dir=data, timeout=180)
    try:
        yield info.bootstrap_servers
    finally:
        broker.stop(port, data_dir=data)


@pytest.fixture
def deployment(kafka: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    name = "t-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60]
    d = Deployment(kafka, name, tmp_path)
    d.create_topics()
    try:
        yield d
    finally:
        d.stop_all()
        topics = [f"{name}.{t}" for t in ("events", "store", "outcomes", "dlq")]
        asyncio.run(delete_topics(kafka, [*topics, d.settings.changelog_topic]))
