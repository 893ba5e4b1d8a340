"""Deadlines end stuck interactions by themselves, against a real broker (contract v2).

The worker's timer notices a passed deadline by its clock and produces an `expire` command; the
core applies it like any input. Read back through the thread API and its stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from devtools.deployment import Deployment, WorkerProcess
from tests.support.thread_api import get, message, post, stream, url, wait_ready

pytestmark = pytest.mark.integration

GUARANTEES = ["at_least_once", "exactly_once"]


def command(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "command", "command": name, **fields}


async def interactions(session: aiohttp.ClientSession, worker: WorkerProcess, thread: str) -> Any:
    status, state = await get(session, url(worker), f"/threads/{thread}")
    assert status == 200, state
    return {i["id"]: i["state"] for i in state["interactions"]}


async def records(
    session: aiohttp.ClientSession, worker: WorkerProcess, thread: str
) -> list[dict[str, Any]]:
    found = await stream(session, url(worker), thread, {"from": "beginning"}, stop_after=None)
    return [data for _, event, data in found if event == "interaction"]


async def until(check: Any, timeout: float) -> float:
    """Seconds until `check()` (a coroutine function) is true; fails after `timeout`."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < timeout, "not within the time allowed"
        await asyncio.sleep(0.2)
    return time.monotonic() - began


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_run_timeout_fails_the_interaction_and_starts_the_queued_event(
    deployment: Deployment, guarantee: str
) -> None:
    deployment.extra_env.update(
        {"ORCHESTRAL_PROCESSING_GUARANTEE": guarantee, "ORCHESTRAL_DEFAULT_POLICY": "queue"}
    )
    worker = deployment.worker().start()
    thread = f"stuck-{uuid.uuid4()}"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, worker)
            await post(session, url(worker), thread, command("configure", run_timeout=2))
            _, first = await post(session, url(worker), thread, message("one"), wait="10")
            _, second = await post(session, url(worker), thread, message("two"), wait="10")
            assert (first["outcome"]["status"], second["outcome"]["status"]) == (
                "started",
                "queued",
            )
            stuck = first["outcome"]["interaction_id"]

            async def failed() -> bool:
                return any(
                    r["interaction_id"] == stuck and r["state"] == "failed"
                    for r in await records(session, worker, thread)
                )

            assert await until(failed, 2 + 2 + 3) <= 2 + 2 + 3  # within 2 s + a tick or two
            found = await records(session, worker, thread)
            [timed_out] = [
                r for r in found if r["state"] == "failed" and r["interaction_id"] == stuck
            ]
            assert timed_out["reason"] == "run_timeout"
            started = [r for r in found if r["state"] == "active" and r["interaction_id"] != stuck]
            assert started and started[0]["cause_event_id"] == second["event_id"]

    asyncio.run(scenario())


def test_heartbeats_keep_an_interaction_alive_until_they_stop(deployment: Deployment) -> None:
    deployment.extra_env["ORCHESTRAL_IDLE_TIMEOUT"] = "2"
    worker = deployment.worker().start()
    thread = f"beating-{uuid.uuid4()}"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, worker)
            _, started = await post(session, url(worker), thread, message("go"), wait="10")
            iid = started["outcome"]["interaction_id"]
            for _ in range(5):  # 5 s of heartbeats, one a second: never idle for 2 s
                beat = command("heartbeat", interaction_id=iid)
                _, answer = await post(session, url(worker), thread, beat, wait="10")
                assert answer["outcome"]["status"] == "applied"
                await asyncio.sleep(1)
            assert (await interactions(session, worker, thread))[iid] == "active"

            async def failed() -> bool:
                return (await interactions(session, worker, thread)).get(iid) == "failed"

            await until(failed, 2 + 3)
            [record] = [r for r in await records(session, worker, thread) if r["state"] == "failed"]
            assert record["reason"] == "idle_timeout"

    asyncio.run(scenario())


def test_a_deadline_that_passed_while_the_worker_was_dead_fires_after_its_restart(
    deployment: Deployment,
) -> None:
    deployment.extra_env["ORCHESTRAL_RUN_TIMEOUT"] = "2"
    worker = deployment.worker().start()
    thread = f"orphan-{uuid.uuid4()}"

    async def start() -> str:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, worker)
            _, started = await post(session, url(worker), thread, message("go"), wait="10")
            return str(started["outcome"]["interaction_id"])

    iid = asyncio.run(start())
    worker.kill()  # SIGKILL before the deadline: nobody owns the thread when it passes
    time.sleep(3)
    worker.start()

    async def after() -> None:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, worker)

            async def failed() -> bool:
                return (await interactions(session, worker, thread)).get(iid) == "failed"

            await until(failed, 10)
            expired = [r for r in await records(session, worker, thread) if r["state"] == "failed"]
            assert len(expired) == 1 and expired[0]["reason"] == "run_timeout"

    asyncio.run(after())


def test_thread_ttl_and_delete_thread_keep_seq_gap_free(deployment: Deployment) -> None:
    deployment.extra_env["ORCHESTRAL_THREAD_TTL"] = "2"
    worker = deployment.worker().start()
    idle, deleted = f"idle-{uuid.uuid4()}", f"deleted-{uuid.uuid4()}"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            base = url(worker)
            await wait_ready(session, worker)
            for thread in (idle, deleted):
                _, started = await post(session, base, thread, message("hi"), wait="10")
                iid = started["outcome"]["interaction_id"]
                await post(session, base, thread, command("complete", interaction_id=iid))
            await post(session, base, deleted, message("again"), wait="10")
            _, answer = await post(session, base, deleted, command("delete_thread"), wait="10")
            assert answer["outcome"]["status"] == "applied"

            async def marked(thread: str, mark: str) -> bool:
                _, page = await get(session, base, f"/threads/{thread}/history", limit="10")
                return any(e.get("payload", {}).get("event_type") == mark for e in page["events"])

            await until(lambda: marked(deleted, "thread_deleted"), 5)
            await until(lambda: marked(idle, "thread_expired"), 2 + 4)
            for thread in (idle, deleted):  # a later record continues the thread's seq
                await post(session, base, thread, message("back"), wait="10")
                _, page = await get(session, base, f"/threads/{thread}/history", limit="100")
                seqs = [e["seq"] for e in page["events"]]
                assert seqs == list(range(len(seqs), 0, -1)), seqs

    asyncio.run(scenario())
