"""What an operator sees on /metrics of a real worker (issue 11, part 6)."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest

from devtools.deployment import Deployment, encode_inputs, produce

pytestmark = pytest.mark.integration


def scrape(port: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        return str(page.read().decode())


def test_outcomes_dead_letters_batches_latency_and_lag_are_measured(
    deployment: Deployment,
) -> None:
    # Deadlines off: the record's logical time is long past, its run timeout would fire at once.
    deployment.extra_env["ORCHESTRAL_RUN_TIMEOUT"] = "0"
    worker = deployment.worker().start()
    good = {"type": "user_input", "thread_id": "m1", "payload": {"message": "hi"},
            "timestamp": "2026-12-01T10:00:00Z"}  # fmt: skip
    records = [*encode_inputs([good, {**good, "event_id": "x"}]), (b"m1", b"\xff not a record")]
    asyncio.run(produce(deployment.bootstrap, deployment.settings.events_topic, records))
    port = worker.env["ORCHESTRAL_WEB_PORT"]
    deadline = time.monotonic() + 60
    page = ""
    while time.monotonic() < deadline:
        try:
            page = scrape(port)
        except OSError:
            page = ""
        if "orchestral_records_in_total 3.0" in page and "orchestral_consumer_lag{" in page:
            break
        time.sleep(0.5)
    # The second record starts a new interaction too (interrupt): two started.
    assert 'orchestral_outcomes_total{status="started"} 2.0' in page, page[-3000:]
    # Every status and reason class is there from the start, with bounded labels only.
    assert 'orchestral_outcomes_total{status="duplicate"} 0.0' in page
    assert 'orchestral_dead_letters_total{reason="undecodable"} 1.0' in page
    assert "orchestral_batch_records_count" in page
    assert "orchestral_batch_seconds_bucket" in page
    assert "orchestral_record_latency_seconds_count 3.0" in page
    assert "orchestral_rebalances_total" in page
    assert 'orchestral_consumer_lag{partition="0"}' in page
    assert "process_cpu_seconds_total" in page
    assert "python_gc_collections_total" in page
    assert '"m1"' not in page  # never a thread id as a label value
