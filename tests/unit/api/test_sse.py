"""GET /threads/{id}/stream: ids, resume without gap or repeat, heartbeats, clean end."""

from __future__ import annotations

import asyncio
import json

from processors.api.backend import StreamMessage
from processors.api.sse import encode
from tests.support.api_fakes import THREAD, read_sse, stored


async def _until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_messages_have_id_event_and_one_line_of_json(serve, http, backend):
    backend.publish(THREAD, "store", stored(THREAD, 1, payload={"message": "a\nb"}))
    backend.publish(THREAD, "outcome", {"type": "outcome", "status": "started"})
    base = await serve(backend)
    url = f"{base}/threads/{THREAD}/stream?from=beginning"
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        first, second = await read_sse(response, 2)
    assert first["id"] == f"{THREAD}:0" and first["event"] == "store"
    assert json.loads(first["data"])["payload"] == {"message": "a\nb"}
    assert second == {"id": f"{THREAD}:1", "event": "outcome",
                      "data": '{"type":"outcome","status":"started"}'}  # fmt: skip


def test_encode_is_one_message_and_keeps_ids_on_one_line():
    data = encode(StreamMessage(id="a\nb", event="interaction", data={"x": "é\n"}))
    assert data == b'id: ab\nevent: interaction\ndata: {"x":"\xc3\xa9\\n"}\n\n'


async def test_from_now_skips_what_was_written_before(serve, http, backend):
    backend.publish(THREAD, "store", stored(THREAD, 1))
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/stream") as response:
        await _until(lambda: backend.open_streams == 1)
        backend.publish(THREAD, "store", stored(THREAD, 2))
        [message] = await read_sse(response, 1)
    assert json.loads(message["data"])["seq"] == 2


async def test_resume_with_last_event_id_has_no_gap_and_no_repeat(serve, http, backend):
    for seq in range(1, 6):
        backend.publish(THREAD, "store", stored(THREAD, seq))
    base = await serve(backend)
    url = f"{base}/threads/{THREAD}/stream?from=beginning"
    async with http.get(url) as response:
        got = await read_sse(response, 3)
    last = got[-1]["id"]
    backend.publish(THREAD, "store", stored(THREAD, 6))  # written while disconnected
    async with http.get(url, headers={"Last-Event-ID": last}) as response:
        await _until(lambda: backend.open_streams == 2)
        backend.publish(THREAD, "store", stored(THREAD, 7))
        got += await read_sse(response, 4)
    seqs = [json.loads(m["data"])["seq"] for m in got]
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    assert len({m["id"] for m in got}) == 7


async def test_an_idle_stream_gets_heartbeat_comments(serve, http, backend):
    base = await serve(backend, heartbeat=0.05)
    async with http.get(f"{base}/threads/{THREAD}/stream") as response:
        comments = 0
        async with asyncio.timeout(5):
            while comments < 3:
                line = await response.content.readline()
                comments += line.startswith(b":")
        backend.publish(THREAD, "store", stored(THREAD, 1))
        [message] = await read_sse(response, 1)  # a heartbeat never loses a pending message
    assert json.loads(message["data"])["seq"] == 1


async def test_the_stream_ends_cleanly_when_the_client_goes_away(serve, http, backend):
    base = await serve(backend, heartbeat=0.05)
    async with http.get(f"{base}/threads/{THREAD}/stream") as response:
        await _until(lambda: backend.open_streams == 1)
        response.close()
    await _until(lambda: backend.closed_streams == 1)


async def test_from_must_be_now_or_beginning(serve, http, backend):
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}/stream?from=yesterday") as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
    assert backend.open_streams == 0
