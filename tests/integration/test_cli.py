"""The CLI and `Client` against a real broker and a running worker (one for the module)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.deployment import ROOT, Deployment, delete_topics, free_port, produce
from processors import exit_codes
from processors.client.client import Client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment with one worker that has answered a first record."""
    d = Deployment(kafka, "t-cli", tmp_path_factory.mktemp("cli"))
    d.create_topics()
    worker = d.worker().start()
    # The CLI reads threads over this worker's thread API.
    d.extra_env["ORCHESTRAL_API_URL"] = f"http://127.0.0.1:{worker.env['ORCHESTRAL_WEB_PORT']}"
    try:
        first = {"type": "user_input", "thread_id": "warm-up", "payload": {"message": "hi"}}
        asyncio.run(send_and_wait(d, [first], timeout=120))
        yield d
    finally:
        d.stop_all()
        topics = [f"{d.name}.{t}" for t in ("events", "store", "outcomes", "dlq")]
        asyncio.run(delete_topics(kafka, [*topics, d.settings.changelog_topic]))


async def send_and_wait(
    d: Deployment, records: list[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    async with Client(d.settings) as client:
        return [(await client.send_and_wait(r, timeout)).outcome or {} for r in records]


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processors.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_send_and_wait_answers_50_in_a_row_on_new_threads(live: Deployment) -> None:
    records = [
        {"type": "user_input", "thread_id": f"new-{uuid.uuid4()}", "payload": {"message": "hi"}}
        for _ in range(50)
    ]
    outcomes = asyncio.run(send_and_wait(live, records, timeout=30))
    assert [o["status"] for o in outcomes] == ["started"] * 50
    assert [o["thread_id"] for o in outcomes] == [r["thread_id"] for r in records]


def test_cli_send_wait_prints_the_outcome_of_each_new_thread(live: Deployment) -> None:
    for n in range(5):  # before send_and_wait, most of these waited for an outcome they missed
        thread = f"cli-{n}-{uuid.uuid4()}"
        sent = cli(live.env, "send", "--thread", thread, "--text", "hi", "--wait")
        assert sent.returncode == 0, sent.stderr
        first, outcome = (json.loads(line) for line in sent.stdout.splitlines())
        assert outcome["source_event_id"] == first["sent"]
        assert (outcome["status"], outcome["thread_id"]) == ("started", thread)
        assert sent.stderr == ""


def test_a_rejected_outcome_exits_4_with_its_reason(live: Deployment) -> None:
    thread = f"rejected-{uuid.uuid4()}"
    argv = ["--thread", thread, "--type", "assistant_output", "--interaction", "nope"]
    sent = cli(live.env, "send", *argv, "--text", "x", "--wait")
    assert sent.returncode == exit_codes.REJECTED
    assert json.loads(sent.stdout.splitlines()[-1])["status"] == "rejected"
    assert one_line(sent.stderr).endswith("rejected: Interaction not found: nope")


def test_a_configure_with_policy_options_applies(live: Deployment) -> None:
    thread = f"configured-{uuid.uuid4()}"
    configure = ["--type", "command", "--command", "configure", "--auto-cleanup", "false"]
    policy = ["--policy", '{"name":"queue","max_queue_depth":3}', "--max-interactions", "2"]
    sent = cli(live.env, "send", "--thread", thread, *configure, *policy, "--wait")
    assert sent.returncode == 0, sent.stderr
    state = cli(live.env, "thread", thread)
    assert state.returncode == 0, state.stderr
    shown = json.loads(state.stdout)
    assert shown["policy"]["name"] == "queue" and shown["policy"]["max_queue_depth"] == 3
    assert (shown["max_interactions_per_thread"], shown["auto_cleanup"]) == (2, False)
    # Configured but no event stored yet: it exists for `history` too.
    assert cli(live.env, "history", thread).returncode == 0


def test_thread_and_history_agree_on_an_unknown_thread(live: Deployment) -> None:
    for command in ("thread", "history"):
        result = cli(live.env, command, "never-seen")
        assert result.returncode == exit_codes.NOT_FOUND
        assert one_line(result.stderr) == f"orchestral-stream {command}: no thread 'never-seen'"
        assert result.stdout == ""


def test_dlq_shows_a_dead_lettered_record_with_its_headers(live: Deployment) -> None:
    thread = f"dlq-{uuid.uuid4()}"
    settings = live.settings

    async def dead_letter() -> tuple[tuple[int, int], dict[str, Any]]:
        async with Client(settings) as client:
            follow = client.dead_letters(follow=True).__aiter__()
            waiting = asyncio.ensure_future(_next_of_key(follow, thread))
            await asyncio.sleep(1)  # the follower has read the backlog and waits
            (at,) = await produce(live.bootstrap, settings.events_topic, [(thread.encode(), b"?")])
            view = await asyncio.wait_for(waiting, 60)
            await follow.aclose()  # type: ignore[attr-defined]
            return at, view

    (partition, offset), followed = asyncio.run(dead_letter())
    assert followed["headers"] == {
        "error": "unknown encoding: first byte 0x3f is neither 0x00 nor '{'",
        "source_topic": settings.events_topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
    }
    shown = cli(live.env, "dlq", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    (line,) = shown.stdout.splitlines()
    assert json.loads(line) == followed
    assert (followed["key"], followed["value"]) == (thread, "?")


async def _next_of_key(views: Any, key: str) -> dict[str, Any]:
    async for view in views:
        if view["key"] == key:
            return dict(view)
    raise AssertionError("the follower ended")


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--thread", "t", "--text", "hi", "--wait"],
        ["history", "t", "--from-topics"],
        ["thread", "t", "--from-topics"],
        ["tail"],
        ["dlq"],
    ],
)
def test_an_unreachable_cluster_is_exit_2_in_one_line(argv: list[str]) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "ORCHESTRAL_CONNECT_TIMEOUT": "2"}
    began = time.monotonic()
    result = cli(env, *argv)
    assert result.returncode == exit_codes.UNREACHABLE
    line = one_line(result.stderr)  # no aiokafka log lines
    assert line.startswith(f"orchestral-stream {argv[0]}: cannot reach Kafka at 127.0.0.1:")
    assert time.monotonic() - began < 20


@pytest.mark.parametrize("command", ["history", "thread"])
def test_no_thread_api_is_exit_75_in_one_line(command: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli({"ORCHESTRAL_API_URL": url}, command, "t")
    assert result.returncode == exit_codes.TEMPFAIL
    line = one_line(result.stderr)
    assert line.startswith(f"orchestral-stream {command}: no thread API answers at {url}")


def test_history_and_thread_from_the_topics_agree_with_the_api(live: Deployment) -> None:
    thread = f"both-{uuid.uuid4()}"
    assert cli(live.env, "send", "--thread", thread, "--text", "hi", "--wait").returncode == 0
    for command in ("history", "thread"):
        api, topics = (
            cli(live.env, command, thread),
            cli(live.env, command, thread, "--from-topics"),
        )
        assert api.returncode == topics.returncode == 0, (api.stderr, topics.stderr)
        assert json.loads(api.stdout) == json.loads(topics.stdout)


def test_no_worker_is_exit_75_naming_the_event(kafka: str, tmp_path: Path) -> None:
    idle = Deployment(kafka, "t-cli-idle", tmp_path)  # topics, but no worker
    idle.create_topics()
    try:
        sent = cli(idle.env, "send", "--thread", "t", "--text", "hi", "--wait", "--timeout", "2")
        assert sent.returncode == exit_codes.TIMEOUT
        event_id = json.loads(sent.stdout)["sent"]  # it was sent: the line says so first
        assert one_line(sent.stderr) == (
            f"orchestral-stream send: no outcome for event {event_id} within 2 s: is a worker "
            f"running for {idle.name}.events at {kafka}?"
        )
    finally:
        topics = [f"{idle.name}.{t}" for t in ("events", "store", "outcomes", "dlq")]
        asyncio.run(delete_topics(kafka, [*topics, idle.settings.changelog_topic]))
