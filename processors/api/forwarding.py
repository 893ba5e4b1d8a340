"""Forwarding a thread request to the worker that owns the thread's partition.

faust's own `table_route` is not used: it forwards neither the body nor most headers
(faust-streaming #188 and its family), and a POST is nothing without its body. Here the method,
path, query, body and the headers that matter go to the owner's advertised URL, and its status,
content type and body come back; a server-sent event stream is relayed chunk by chunk.

A forwarded request carries `X-Orchestral-Forwarded: 1`. A worker that gets one for a thread it
does not own answers 503 instead of forwarding it again: during a rebalance two workers may
each believe the other owns the partition, and would bounce the request between them.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import web

from processors.api.problems import ApiProblem
from processors.api.sse import DISCONNECT_CHECK, client_gone

FORWARDED_HEADER = "X-Orchestral-Forwarded"
_REQUEST_HEADERS = ("Authorization", "Idempotency-Key", "Content-Type", "Accept", "Last-Event-ID")
_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "Cache-Control", "WWW-Authenticate", "Allow")
CONNECT_TIMEOUT = 5.0


def was_forwarded(request: web.Request) -> bool:
    return FORWARDED_HEADER in request.headers


class Forwarder:
    """One client session for every forwarded request (opened on first use)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No environment proxies: workers talk to each other directly.
            self._session = aiohttp.ClientSession(trust_env=False)
        return self._session

    async def forward(
        self,
        request: web.Request,
        base_url: str,
        body: bytes | None,
        *,
        read_timeout: float | None,
    ) -> web.StreamResponse:
        """Relay `request` to `base_url`; `read_timeout` None for a stream (it has no end)."""
        url = base_url.rstrip("/") + str(request.rel_url)
        given = request.headers
        headers = {name: given[name] for name in _REQUEST_HEADERS if name in given}
        headers[FORWARDED_HEADER] = "1"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout
        )
        try:
            upstream = await self._client().request(
                request.method, url, data=body, headers=headers, timeout=timeout,
                allow_redirects=False,
            )  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiProblem.unavailable(
                "no-owner",
                f"the thread's owner at {base_url} did not answer ({type(exc).__name__}): "
                "retry, ownership may be moving",
                reason="owner unreachable",
            ) from None
        async with upstream:
            relayed = {k: upstream.headers[k] for k in _RESPONSE_HEADERS if k in upstream.headers}
            if upstream.content_type != "text/event-stream":
                try:
                    data = await upstream.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise ApiProblem.unavailable(
                        "no-owner",
                        f"the thread's owner at {base_url} broke off its answer "
                        f"({type(exc).__name__})",
                        reason="owner unreachable",
                    ) from None
                return web.Response(status=upstream.status, body=data, headers=relayed)
            response = web.StreamResponse(status=upstream.status, headers=relayed)
            response.headers["X-Accel-Buffering"] = "no"
            await response.prepare(request)
            # Either side going away ends the relay; leaving `async with` closes the upstream.
            with contextlib.suppress(
                aiohttp.ClientError, TimeoutError, ConnectionResetError, ConnectionAbortedError
            ):
                await _relay(request, upstream, response)
            return response


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
) -> None:
    """Copy the upstream's chunks until either side ends (the client's side is looked at
    every DISCONNECT_CHECK s: an idle stream would otherwise notice only at its next write)."""
    chunk: asyncio.Future[bytes] | None = None
    try:
        while not client_gone(request):
            if chunk is None:
                chunk = asyncio.ensure_future(upstream.content.readany())
            done, _ = await asyncio.wait({chunk}, timeout=DISCONNECT_CHECK)
            if not done:
                continue
            data = chunk.result()
            chunk = None
            if not data:
                return  # the owner ended the stream
            await response.write(data)
    finally:
        if chunk is not None and not chunk.done():
            chunk.cancel()
            with contextlib.suppress(BaseException):
                await chunk
