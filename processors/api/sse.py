"""Server-sent events (`text/event-stream`) from a backend's message iterator.

A comment line every `heartbeat` seconds keeps proxies and load balancers from closing an idle
stream (nginx's proxy_read_timeout and AWS ALB's idle timeout are 60 s by default). The stream
ends when the client goes away: a write fails (aiohttp does not cancel the handler by default)
or the handler is cancelled; the backend's iterator is closed either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from processors.api.backend import StreamMessage

CONTENT_TYPE = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def encode(message: StreamMessage) -> bytes:
    """One message: `id:`, `event:`, and `data:` as one line of JSON."""
    message_id = message.id.replace("\r", "").replace("\n", "")
    data = json.dumps(message.data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {message_id}\nevent: {message.event}\ndata: {data}\n\n".encode()


async def serve(
    request: web.Request, messages: AsyncIterator[StreamMessage], heartbeat: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, **SSE_HEADERS})
    next_message: asyncio.Future[Any] | None = None
    try:
        await response.prepare(request)
        await response.write(HEARTBEAT)  # flushes the headers: the client knows it is open
        while True:
            if next_message is None:
                next_message = asyncio.ensure_future(anext(messages))
            done, _ = await asyncio.wait({next_message}, timeout=heartbeat)
            if not done:
                await response.write(HEARTBEAT)
                continue
            try:
                message = next_message.result()
            except StopAsyncIteration:
                break
            next_message = None
            await response.write(encode(message))
    except (ConnectionResetError, ConnectionAbortedError):
        pass  # the client went away
    finally:
        if next_message is not None and not next_message.done():
            next_message.cancel()
            with contextlib.suppress(BaseException):
                await next_message
        aclose = getattr(messages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return response
