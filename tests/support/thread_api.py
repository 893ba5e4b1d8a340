"""Talking to a real worker's thread API over HTTP, for the integration tests."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from devtools.deployment import WorkerProcess


def url(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.env['ORCHESTRAL_WEB_PORT']}"


class NotReady(AssertionError):
    """A worker did not become ready in time (the message is the tail of its log)."""


async def wait_ready(session: aiohttp.ClientSession, *workers: WorkerProcess) -> None:
    """Until every worker answers /readyz with 200 in the same round: one ready first may be
    rebalancing again once the next has joined (and then answers 503)."""
    deadline = time.monotonic() + 120
    while True:
        waiting = [w for w in workers if not await _ready(session, w)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise NotReady(waiting[0].log()[-3000:])
        await asyncio.sleep(0.5)


async def _ready(session: aiohttp.ClientSession, worker: WorkerProcess) -> bool:
    try:
        async with session.get(url(worker) + "/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def post(
    session: aiohttp.ClientSession, base: str, thread: str, body: dict[str, Any], **params: str
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{base}/threads/{thread}/events", json=body, params=params) as r:
        return r.status, await r.json(content_type=None)


async def get(
    session: aiohttp.ClientSession, base: str, path: str, **params: str
) -> tuple[int, dict[str, Any]]:
    async with session.get(base + path, params=params) as response:
        return response.status, await response.json(content_type=None)


def message(text: str) -> dict[str, Any]:
    return {"type": "user_input", "payload": {"message": text}}


async def stream(
    session: aiohttp.ClientSession,
    base: str,
    thread: str,
    params: dict[str, str],
    *,
    stop_after: int | None,
    last: str | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of the stream's messages, until `stop_after` of them or a quiet second."""
    headers = {"Last-Event-ID": last} if last else {}
    messages: list[tuple[str, str, dict[str, Any]]] = []
    async with session.get(f"{base}/threads/{thread}/stream", params=params, headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        while stop_after is None or len(messages) < stop_after:
            try:
                line = (await asyncio.wait_for(r.content.readline(), 2.0)).decode().rstrip("\n")
            except TimeoutError:
                break
            if line.startswith(":"):
                continue
            if not line:
                if "data" in fields:
                    messages.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    return messages
