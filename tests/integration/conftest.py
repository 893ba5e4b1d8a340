"""A real Apache Kafka broker for the integration tests, started and stopped by the test run.

Set ORCHESTRAL_TEST_BOOTSTRAP=host:port to use a broker that is already running instead.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import broker
from devtools.deployment import Deployment, delete_topics, free_port_pair


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("ORCHESTRAL_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    port = free_port_pair()
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
