"""State survives restarts, empty data dirs and SIGKILL; the output still equals the oracle."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import pytest

from devtools.deployment import (
    ROOT,
    Deployment,
    encode_inputs,
    free_port,
    produce,
)
from devtools.workload import generate
from tests.support.oracle import check_against_oracle

pytestmark = pytest.mark.integration


def send(deployment: Deployment, records: list[dict[str, object]]) -> None:
    asyncio.run(
        produce(deployment.bootstrap, deployment.settings.events_topic, encode_inputs(records))
    )


def batches(
    n: int, threads: int, seed: int
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Two halves of one workload: the second's commands address the first's interactions."""
    records = generate(2 * n, threads, seed=seed)
    return records[:n], records[n:]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_clean_restart_keeps_local_state(deployment: Deployment, guarantee: str) -> None:
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    first, second = batches(300, 20, seed=11)
    worker = deployment.worker().start()
    send(deployment, first)
    asyncio.run(check_against_oracle(deployment))
    assert worker.stop() == 0  # SIGTERM: a clean shutdown
    worker.start()
    send(deployment, second)
    asyncio.run(check_against_oracle(deployment))


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_empty_data_dir_rebuilds_state_from_the_changelog(
    deployment: Deployment, guarantee: str
) -> None:
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    first, second = batches(300, 20, seed=12)
    worker = deployment.worker(0).start()
    send(deployment, first)
    asyncio.run(check_against_oracle(deployment))
    worker.stop()
    # A new data dir, nested and not there yet (like ./var/data in a fresh clone): nothing local.
    fresh = deployment.worker(1, data_dir=deployment.tmp / "fresh" / "var" / "data").start()
    send(deployment, second)
    asyncio.run(check_against_oracle(deployment))
    # Read in batches before faust's recovery (changelog_restore.py), not by faust's own loop.
    restored = re.findall(r"changelog restore: (\d+) records", fresh.log())
    assert restored and int(restored[0]) > 0, restored


def test_unreachable_broker_fails_fast_with_a_clear_message(tmp_path: object) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "ORCHESTRAL_CONNECT_TIMEOUT": "3",
        "PATH": "/usr/bin:/bin",
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "processors.cli", "worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "cannot reach Kafka at 127.0.0.1:" in proc.stderr
    assert time.monotonic() - started < 30
