"""State survives restarts, empty data dirs and SIGKILL; the output still equals the oracle."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

import pytest

from benchmarks.workload import generate
from tests.integration.harness import (
    ROOT,
    Deployment,
    encode_inputs,
    free_port,
    produce,
    worker_outputs,
)
from tests.integration.test_worker import check_against_oracle

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


def test_clean_restart_keeps_local_state(deployment: Deployment) -> None:
    first, second = batches(300, 20, seed=11)
    worker = deployment.worker().start()
    send(deployment, first)
    asyncio.run(check_against_oracle(deployment))
    assert worker.stop() == 0  # SIGTERM: a clean shutdown
    worker.start()
    send(deployment, second)
    asyncio.run(check_against_oracle(deployment))


def test_empty_data_dir_rebuilds_state_from_the_changelog(deployment: Deployment) -> None:
    first, second = batches(300, 20, seed=12)
    worker = deployment.worker(0).start()
    send(deployment, first)
    asyncio.run(check_against_oracle(deployment))
    worker.stop()
    deployment.worker(1).start()  # a new data dir: nothing local
    send(deployment, second)
    asyncio.run(check_against_oracle(deployment))


@pytest.mark.parametrize(
    "guarantee",
    ["at_least_once", "exactly_once"],
)
def test_kill_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    deployment: Deployment, guarantee: str
) -> None:
    deployment.extra_env["ORCHESTRAL_PROCESSING_GUARANTEE"] = guarantee
    rng = random.Random(5)
    worker = deployment.worker().start()
    send(deployment, generate(4000, 100, seed=13))
    seen = 0
    for _ in range(3):
        # Wait until this incarnation produces (more output than before), then kill it at a
        # random moment: mid-stream, not while it is still starting.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(asyncio.run(worker_outputs(deployment))) <= seen:
            time.sleep(0.3)
        time.sleep(rng.uniform(0.2, 2.0))
        seen = len(asyncio.run(worker_outputs(deployment)))
        worker.kill()
        worker.start()
    result = asyncio.run(
        check_against_oracle(
            deployment, timeout=240, duplicates_allowed=guarantee == "at_least_once"
        )
    )
    print(f"{guarantee}: kills 3, {result.summary()}")


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
