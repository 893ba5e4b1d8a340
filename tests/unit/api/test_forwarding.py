"""Forwarding between two real app instances: A says "not local, the owner is at B"."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest

from processors.api import Owner
from processors.api.forwarding import FORWARDED_HEADER
from tests.support.api_fakes import THREAD, FakeBackend, make_settings, read_sse, stored

TOKEN = "tok"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def pair(serve):
    """(base URL of A, A's backend, B's backend): B owns the thread, A forwards to it."""
    owner = FakeBackend()
    settings = make_settings(api_token=TOKEN)
    owner_url = await serve(owner, settings)
    front = FakeBackend()
    front.owner_of = Owner(local=False, url=owner_url)
    front_url = await serve(front, settings)
    return front_url, front, owner


async def test_post_body_and_headers_arrive_intact(pair, http):
    front_url, front, owner = pair
    record = {"type": "user_input", "payload": {"message": "héllo ✓", "n": [1, 2.5, None]}}
    headers = {**AUTH, "Idempotency-Key": "idem-1"}
    url = f"{front_url}/threads/{THREAD}/events?wait=2"
    async with http.post(url, json=record, headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        body = await response.json()
    assert front.submitted == []
    [produced] = owner.submitted
    assert produced["payload"] == record["payload"]
    assert produced["event_id"] == "idem-1" == body["event_id"]
    assert body["outcome"]["source_event_id"] == "idem-1"


async def test_problems_and_queries_are_relayed(pair, http):
    front_url, _, owner = pair
    owner.events[THREAD] = [stored(THREAD, seq) for seq in range(1, 6)]
    url = f"{front_url}/threads/{THREAD}/history?limit=2&before_seq=5"
    async with http.get(url, headers=AUTH) as response:
        page = await response.json()
    assert [e["seq"] for e in page["events"]] == [4, 3]
    assert owner.history_calls == [{"limit": 2, "before_seq": 5, "include_rolled_back": False}]
    async with http.get(f"{front_url}/threads/{THREAD}", headers=AUTH) as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
    body = {"type": "user_input", "payload": None}
    async with http.post(f"{front_url}/threads/{THREAD}/events", json=body, headers=AUTH) as r:
        assert r.status == 400
        assert "payload must not be null" in (await r.json(content_type=None))["detail"]
    owner.ready = (True, None)
    owner.owner_of = Owner(local=False, url=None, ready=False, reason="restoring")
    async with http.get(f"{front_url}/threads/{THREAD}", headers=AUTH) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"


async def test_the_token_is_checked_before_forwarding_and_forwarded(pair, http):
    front_url, _, owner = pair
    async with http.post(f"{front_url}/threads/{THREAD}/events", json={}) as response:
        assert response.status == 401
    async with http.post(
        f"{front_url}/threads/{THREAD}/events",
        json={"type": "user_input", "payload": {}},
        headers=AUTH,
    ) as response:
        assert response.status == 202
    assert len(owner.submitted) == 1


async def test_sse_is_streamed_through(pair, http):
    front_url, _, owner = pair
    owner.publish(THREAD, "store", stored(THREAD, 1))
    url = f"{front_url}/threads/{THREAD}/stream?from=beginning"
    async with http.get(url, headers=AUTH) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        [first] = await read_sse(response, 1)
        owner.publish(THREAD, "outcome", {"type": "outcome", "status": "started"})
        [second] = await read_sse(response, 1)
    assert json.loads(first["data"])["seq"] == 1
    assert second["event"] == "outcome" and second["id"] == f"{THREAD}:1"
    async with http.get(url, headers={**AUTH, "Last-Event-ID": first["id"]}) as response:
        [again] = await read_sse(response, 1)
    assert again["id"] == second["id"]  # Last-Event-ID forwarded too
    async with asyncio.timeout(5):
        while owner.closed_streams < 2:
            await asyncio.sleep(0.01)


async def test_a_forwarded_request_is_never_forwarded_again(pair, http):
    front_url, _, _ = pair
    headers = {**AUTH, FORWARDED_HEADER: "1"}
    async with http.get(f"{front_url}/threads/{THREAD}", headers=headers) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        body = await response.json(content_type=None)
    assert body["type"].endswith(":forward-loop")


async def test_two_workers_that_each_think_the_other_owns_it_answer_503(serve, http):
    a, b = FakeBackend(), FakeBackend()
    a_url, b_url = await serve(a), await serve(b)
    a.owner_of = Owner(local=False, url=b_url)
    b.owner_of = Owner(local=False, url=a_url)
    async with http.post(
        f"{a_url}/threads/{THREAD}/events", json={"type": "user_input", "payload": {}}
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json(content_type=None))["type"].endswith(":forward-loop")
    assert a.submitted == b.submitted == []


async def test_an_unreachable_owner_is_503(serve, http):
    front = FakeBackend()
    front.owner_of = Owner(local=False, url="http://127.0.0.1:9")  # discard port: refused
    front_url = await serve(front)
    async with http.get(f"{front_url}/threads/{THREAD}") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json(content_type=None))["reason"] == "owner unreachable"


@pytest.mark.parametrize("thread_id", ["a b", "ünï", "x%y", "a:b"])
async def test_odd_thread_ids_survive_forwarding(pair, http, thread_id):
    front_url, _, owner = pair
    url = f"{front_url}/threads/{quote(thread_id, safe='')}/events"
    record = {"type": "user_input", "payload": {}, "thread_id": thread_id}
    async with http.post(url, json=record, headers=AUTH) as response:
        assert response.status == 202, await response.text()
        assert (await response.json())["thread_id"] == thread_id
    assert owner.submitted[0]["thread_id"] == thread_id
