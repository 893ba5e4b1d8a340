"""Server-sent events (`text/event-stream`) from a backend's message iterator.

A comment line every `heartbeat` seconds keeps proxies and load balancers from closing an idle
stream (nginx's proxy_read_timeout and AWS ALB's idle timeout are 60 s by default). The stream
ends when the client goes away: aiohttp does not cancel a handler when its client disconnects
(handler_cancellation is off by default), so the connection is looked at every
`DISCONNECT_CHECK` seconds, and a failed write or a cancelled handler end it too; the backend's
iterator is closed in every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from processors.api.backend import StreamMessage

CONTENT_TYPE = "text/event-stream"
HEARTBEAT = b": keep-alive\n\n"
DISCONNECT_CHECK = 1.0  # seconds between looks at an idle stream's connection
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


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
        last_write = time.monotonic()
        while not client_gone(request):
            if next_message is None:
                next_message = asyncio.ensure_future(anext(messages))
            tick = min(DISCONNECT_CHECK, max(0.0, last_write + heartbeat - time.monotonic()))
            done, _ = await asyncio.wait({next_message}, timeout=tick)
            if not done:
                if time.monotonic() - last_write >= heartbeat:
                    await response.write(HEARTBEAT)
                    last_write = time.monotonic()
                continue
            try:
                message = next_message.result()
            except StopAsyncIteration:
                break
            next_message = None
            await response.write(encode(message))
            last_write = time.monotonic()
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
