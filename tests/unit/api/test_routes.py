"""Every endpoint and error of the HTTP API, over real HTTP, against the in-memory backend."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import Any

import pytest

from processors.api import Owner
from processors.client.client import Client, RecordRefused
from schemas.codec import InputDecoder
from schemas.errors import DecodeError
from tests.support.api_fakes import (
    THREAD,
    TS,
    interaction,
    make_settings,
    stored,
    thread_state,
)

PROBLEM = "application/problem+json"
USER_INPUT = {"type": "user_input", "payload": {"message": "hi"}}


async def _problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body = await response.json(content_type=None)
    assert body["type"] == f"urn:orchestral-stream:problem:{slug}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


# --- POST /threads/{id}/events --------------------------------------------------------------


async def test_post_fills_thread_timestamp_and_event_id(serve, http, backend):
    base = await serve(backend)
    async with http.post(f"{base}/threads/{THREAD}/events", json=USER_INPUT) as response:
        assert response.status == 202
        body = await response.json()
    [record] = backend.submitted
    assert record["thread_id"] == THREAD
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", record["timestamp"])
    uuid.UUID(record["event_id"])
    assert body == {
        "event_id": record["event_id"],
        "thread_id": THREAD,
        "partition": 3,
        "offset": 0,
    }


async def test_post_takes_event_id_from_idempotency_key(serve, http, backend):
    base = await serve(backend)
    url = f"{base}/threads/{THREAD}/events"
    async with http.post(url, json=USER_INPUT, headers={"Idempotency-Key": "k1"}) as response:
        assert (await response.json())["event_id"] == "k1"
    body = {**USER_INPUT, "event_id": "own", "timestamp": TS, "thread_id": THREAD}
    async with http.post(url, json=body, headers={"Idempotency-Key": "own"}) as response:
        assert (await response.json())["event_id"] == "own"
    assert backend.submitted[1]["timestamp"] == TS
    async with http.post(url, json=body, headers={"Idempotency-Key": "other"}) as response:
        await _problem(response, 400, "bad-request")
    assert len(backend.submitted) == 2


async def test_post_thread_id_must_match_the_path(serve, http, backend):
    base = await serve(backend)
    body = {**USER_INPUT, "thread_id": "other"}
    async with http.post(f"{base}/threads/{THREAD}/events", json=body) as response:
        problem = await _problem(response, 400, "bad-request")
    assert "other" in problem["detail"] and THREAD in problem["detail"]
    assert backend.submitted == []


INVALID = [
    {"type": "nonsense", "payload": {}},
    {"payload": {}},
    {"type": "user_input"},
    {"type": "user_input", "payload": None},
    {"type": "user_input", "payload": {}, "timestamp": "yesterday"},
    {"type": "command", "command": "complete"},
    {"type": "command", "command": "launch", "interaction_id": "i1"},
    {"type": "external_event", "payload": {}},
    {"type": "user_input", "payload": {}, "concurrency": "fastest"},
    [1, 2],
    "text",
]


@pytest.mark.parametrize("record", INVALID, ids=lambda r: json.dumps(r)[:40])
async def test_post_refuses_what_the_client_refuses_with_the_same_reason(
    serve, http, backend, record
):
    settings = make_settings()
    base = await serve(backend, settings)
    expected = record
    if isinstance(record, dict):
        expected = {**record, "thread_id": THREAD, "event_id": "e"}
    with pytest.raises(RecordRefused) as refused:
        Client(settings).prepare(expected)
    async with http.post(f"{base}/threads/{THREAD}/events", json=record) as response:
        problem = await _problem(response, 400, "invalid-record")
    assert problem["detail"] == refused.value.reason
    assert backend.submitted == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1]", b'{"a": NaN}'])
async def test_post_refuses_undecodable_bodies_in_the_worker_s_words(serve, http, backend, body):
    base = await serve(backend)
    with pytest.raises(DecodeError) as refused:
        InputDecoder().decode(body)
    async with http.post(f"{base}/threads/{THREAD}/events", data=body) as response:
        problem = await _problem(response, 400, "invalid-record")
    assert problem["detail"] == refused.value.reason
    assert backend.submitted == []


async def test_post_over_the_size_limit_is_413(serve, http, backend):
    base = await serve(backend, make_settings(max_input_bytes=1024))
    url = f"{base}/threads/{THREAD}/events"
    record = {"type": "user_input", "payload": {"message": "x" * 1500}}
    async with http.post(url, json=record) as response:
        problem = await _problem(response, 413, "too-large")
    assert "ORCHESTRAL_MAX_INPUT_BYTES=1024" in problem["detail"]
    huge = {"type": "user_input", "payload": {"message": "x" * 5000}}
    async with http.post(url, json=huge) as response:
        await _problem(response, 413, "too-large")
    assert backend.submitted == []
    async with http.post(url, json=USER_INPUT) as response:
        assert response.status == 202


async def test_post_wait_answers_with_the_outcome(serve, http, backend):
    base = await serve(backend)
    async with http.post(f"{base}/threads/{THREAD}/events?wait=2", json=USER_INPUT) as response:
        assert response.status == 200
        body = await response.json()
    [record] = backend.submitted
    assert body["event_id"] == record["event_id"]
    assert body["outcome"]["source_event_id"] == record["event_id"]
    assert body["outcome"]["status"] == "started"


async def test_post_wait_timeout_is_504_with_the_event_id(serve, http, backend):
    backend.answer_outcomes = False
    base = await serve(backend)
    url = f"{base}/threads/{THREAD}/events?wait=0.1"
    async with http.post(url, json=USER_INPUT, headers={"Idempotency-Key": "k7"}) as response:
        problem = await _problem(response, 504, "outcome-timeout")
    assert problem["event_id"] == "k7"
    assert (problem["partition"], problem["offset"]) == (3, 0)


@pytest.mark.parametrize("wait", ["0", "-1", "30.5", "abc", "nan", "inf"])
async def test_post_wait_bounds(serve, http, backend, wait):
    base = await serve(backend)
    async with http.post(f"{base}/threads/{THREAD}/events?wait={wait}", json=USER_INPUT) as resp:
        await _problem(resp, 400, "bad-request")
    assert backend.submitted == []


# --- GET /threads/{id} ----------------------------------------------------------------------


async def test_state_and_unknown_thread(serve, http, backend):
    backend.states[THREAD] = thread_state(THREAD)
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}") as response:
        assert response.status == 200
        assert await response.json() == thread_state(THREAD)
    async with http.get(f"{base}/threads/nobody") as response:
        await _problem(response, 404, "not-found")


async def test_state_min_offset_waits_until_the_offset_is_handled(serve, http, backend):
    backend.states[THREAD] = thread_state(THREAD)
    backend.handled[THREAD] = 5  # offsets 0..4 handled
    base = await serve(backend, poll_interval=0.01)
    async with http.get(f"{base}/threads/{THREAD}?min_offset=4") as response:
        assert response.status == 200

    async def handle_later() -> None:
        await asyncio.sleep(0.1)
        backend.handled[THREAD] = 6

    task = asyncio.create_task(handle_later())
    async with http.get(f"{base}/threads/{THREAD}?min_offset=5&wait=5") as response:
        assert response.status == 200
    await task
    async with http.get(f"{base}/threads/{THREAD}?min_offset=6&wait=0.05") as response:
        problem = await _problem(response, 504, "offset-timeout")
    assert (problem["min_offset"], problem["handled_offset"]) == (6, 6)
    async with http.get(f"{base}/threads/{THREAD}?min_offset=6") as response:
        await _problem(response, 504, "offset-timeout")


@pytest.mark.parametrize(
    "query",
    ["min_offset=-1", "min_offset=x", "wait=1", "min_offset=1&wait=31", "min_offset=1&wait=-1"],
)
async def test_state_bad_params(serve, http, backend, query):
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}?{query}") as response:
        await _problem(response, 400, "bad-request")


# --- GET /threads/{id}/history --------------------------------------------------------------


async def test_history_pages_newest_first(serve, http, backend):
    backend.events[THREAD] = [stored(THREAD, seq) for seq in range(1, 26)]
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/history") as response:
        page = await response.json()
    assert [e["seq"] for e in page["events"]] == list(range(25, 5, -1))
    assert page["next_before_seq"] == 6 and page["thread_id"] == THREAD
    url = f"{base}/threads/{THREAD}/history?before_seq=6&limit=3&include_rolled_back=true"
    async with http.get(url) as response:
        page = await response.json()
    assert [e["seq"] for e in page["events"]] == [5, 4, 3]
    assert backend.history_calls == [
        {"limit": 20, "before_seq": None, "include_rolled_back": False},
        {"limit": 3, "before_seq": 6, "include_rolled_back": True},
    ]


async def test_history_of_an_unknown_thread_is_empty(serve, http, backend):
    base = await serve(backend)
    async with http.get(f"{base}/threads/nobody/history") as response:
        assert response.status == 200
        assert await response.json() == {
            "thread_id": "nobody",
            "events": [],
            "next_before_seq": None,
        }


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=x",
        "before_seq=0",
        "before_seq=1.5",
        "include_rolled_back=yes",
    ],
)
async def test_history_bad_params(serve, http, backend, query):
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/history?{query}") as response:
        await _problem(response, 400, "bad-request")
    assert backend.history_calls == []


@pytest.mark.parametrize("limit", ["1", "1000"])
async def test_history_limit_bounds_are_inclusive(serve, http, backend, limit):
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/history?limit={limit}") as response:
        assert response.status == 200
    assert backend.history_calls[0]["limit"] == int(limit)


# --- GET /threads/{id}/interactions/{iid} ---------------------------------------------------


async def test_interaction_found_and_not(serve, http, backend):
    backend.interactions[(THREAD, "i1")] = interaction()
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/interactions/i1") as response:
        assert response.status == 200
        assert await response.json() == interaction()
    async with http.get(f"{base}/threads/{THREAD}/interactions/i2") as response:
        await _problem(response, 404, "not-found")


# --- ownership ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/events"),
        ("GET", ""),
        ("GET", "/history"),
        ("GET", "/interactions/i1"),
        ("GET", "/stream"),
    ],
)
async def test_no_ready_owner_is_503_with_retry_after(serve, http, backend, method, path):
    backend.owner_of = Owner(local=False, url=None, ready=False, reason="rebalancing")
    base = await serve(backend)
    async with http.request(method, f"{base}/threads/{THREAD}{path}", json=USER_INPUT) as response:
        problem = await _problem(response, 503, "no-owner")
        assert response.headers["Retry-After"] == "1"
    assert problem["reason"] == "rebalancing"
    assert backend.submitted == []


async def test_owner_without_url_is_503(serve, http, backend):
    backend.owner_of = Owner(local=False, url=None)
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}") as response:
        await _problem(response, 503, "no-owner")
        assert response.headers["Retry-After"] == "1"


# --- open endpoints -------------------------------------------------------------------------


async def test_healthz_and_readyz(serve, http, backend):
    base = await serve(backend)
    async with http.get(f"{base}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with http.get(f"{base}/readyz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ready"})
    backend.ready = (False, "restoring")
    async with http.get(f"{base}/readyz") as response:
        problem = await _problem(response, 503, "not-ready")
        assert response.headers["Retry-After"] == "1"
    assert problem["reason"] == "restoring"


# --- errors ---------------------------------------------------------------------------------


async def test_unknown_paths_and_methods_are_problems(serve, http, backend):
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/nothing/here") as response:
        await _problem(response, 404, "not-found")
    async with http.delete(f"{base}/threads/{THREAD}") as response:
        await _problem(response, 405, "method-not-allowed")
        assert "GET" in response.headers["Allow"]


async def test_an_unexpected_error_is_a_500_problem_logged_once(serve, http, backend, caplog):
    backend.states[THREAD] = thread_state(THREAD)
    backend.fail_with = RuntimeError("secret internals")
    base = await serve(backend)
    with caplog.at_level(logging.ERROR):
        async with http.get(f"{base}/threads/{THREAD}") as response:
            problem = await _problem(response, 500, "internal")
    assert "secret" not in json.dumps(problem) and "Traceback" not in json.dumps(problem)
    logged = [r for r in caplog.records if r.exc_info and "secret internals" in str(r.exc_info[1])]
    assert len(logged) == 1


async def test_a_malformed_backend_answer_is_a_500_problem(serve, http, backend):
    backend.states[THREAD] = {"thread_id": THREAD}
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}") as response:
        await _problem(response, 500, "internal")
