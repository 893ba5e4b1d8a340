"""The thread API's routes, mounted on an aiohttp application (faust's, in a worker).

    api = add_routes(app.web.web_app, backend, settings)   # before the web server starts

Every `/threads/{thread_id}...` request is served by the owner of the thread's partition: when
`backend.owner()` says another worker owns it, the request is forwarded there (`forwarding.py`);
while nobody is ready to own it, 503 with Retry-After. Query parameters are checked before
forwarding (a bad one is a 400 wherever it arrives); the body is checked by the owner, with the
client's own rules (`Client.prepare`: the worker's decoder, its null-payload rule, the size
limit), so a record the worker would dead-letter or answer `invalid` is never produced.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from config.settings import Settings
from processors.api import sse
from processors.api.backend import Owner, ThreadBackend
from processors.api.forwarding import Forwarder, was_forwarded
from processors.api.models import (
    Accepted,
    Handled,
    Health,
    HistoryPage,
    InteractionView,
    Ready,
    ThreadStateView,
    dump,
)
from processors.api.openapi import build_openapi
from processors.api.problems import ApiProblem, problem_middleware
from processors.api.security import authorize
from processors.client.client import Client, RecordRefused, RecordTooLarge
from schemas.codec import InputDecoder
from schemas.errors import DecodeError

THREADS = "/threads"
OPEN_PATHS = ("/healthz", "/readyz", "/openapi.json")
MAX_WAIT = 30.0  # seconds a request may wait for an outcome or an offset
HISTORY_LIMIT = (1, 1000, 20)  # min, max, default
HEARTBEAT = 15.0  # seconds between SSE comments
POLL_INTERVAL = 0.05  # seconds between `handled_offset` checks of `?min_offset`
# Beyond the request's own wait: time for the owner to answer a forwarded request.
FORWARD_MARGIN = 10.0
# A raw JSON body may be larger than its compact encoding (indentation, escapes): the exact
# limit is the encoded record's (413 from Client.prepare); this cap only bounds memory.
BODY_FACTOR = 2


def add_routes(
    app: web.Application,
    backend: ThreadBackend,
    settings: Settings,
    *,
    client_factory: Callable[[Settings], Client] = Client,
    heartbeat: float = HEARTBEAT,
    poll_interval: float = POLL_INTERVAL,
) -> ThreadApi:
    """Register the API's routes, its problem middleware and its cleanup on `app`.

    Call it before the application starts (aiohttp freezes routes and middlewares then).
    `client_factory` gives the `Client` whose `prepare` checks records (it does no I/O).
    """
    api = ThreadApi(backend, settings, client_factory(settings), heartbeat, poll_interval)
    app.middlewares.append(problem_middleware((THREADS, *OPEN_PATHS)))
    app.router.add_post("/threads/{thread_id}/events", api.post_event)
    app.router.add_get("/threads/{thread_id}", api.get_state)
    app.router.add_get("/threads/{thread_id}/history", api.get_history)
    app.router.add_get("/threads/{thread_id}/interactions/{interaction_id}", api.get_interaction)
    app.router.add_get("/threads/{thread_id}/stream", api.get_stream)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/readyz", api.readyz)
    app.router.add_get("/openapi.json", api.openapi)
    app.on_cleanup.append(api.close)
    app[API_KEY] = api
    return api


class ThreadApi:
    def __init__(
        self,
        backend: ThreadBackend,
        settings: Settings,
        client: Client,
        heartbeat: float,
        poll_interval: float,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.client = client
        self.heartbeat = heartbeat
        self.poll_interval = poll_interval
        self.forwarder = Forwarder()
        self.decoder = InputDecoder()
        self._openapi = json.dumps(build_openapi()).encode()

    async def close(self, _app: web.Application | None = None) -> None:
        await self.forwarder.close()

    # --- /threads ---------------------------------------------------------------------------

    async def post_event(self, request: web.Request) -> web.StreamResponse:
        authorize(request, self.settings)
        thread_id = request.match_info["thread_id"]
        wait = _wait_param(request, allow_zero=False)
        body = await self._read_body(request)
        forwarded = await self._forward(request, thread_id, body, wait)
        if forwarded is not None:
            return forwarded
        record = self._record(request, thread_id, body)
        try:
            prepared = self.client.prepare(record)
        except RecordTooLarge as exc:
            raise ApiProblem(413, "too-large", exc.reason) from None
        except RecordRefused as exc:
            raise ApiProblem(400, "invalid-record", exc.reason) from None
        submitted = await self.backend.submit(prepared.record)
        accepted = Accepted(
            event_id=submitted.event_id,
            thread_id=submitted.thread_id,
            partition=submitted.partition,
            offset=submitted.offset,
        )
        if wait is None:
            return web.json_response(dump(accepted), status=202)
        outcome = await self.backend.outcome(
            submitted.thread_id, submitted.event_id, submitted.partition, submitted.offset, wait
        )
        if outcome is None:
            raise ApiProblem(
                504,
                "outcome-timeout",
                f"event {submitted.event_id} was produced (partition {submitted.partition}, "
                f"offset {submitted.offset}) but not answered within {wait:g} s: it will be; "
                "do not resend it without its event_id",
                **dump(accepted),
            )
        handled = Handled(**accepted.model_dump(), outcome=outcome)
        return web.json_response(dump(handled))

    async def get_state(self, request: web.Request) -> web.StreamResponse:
        authorize(request, self.settings)
        thread_id = request.match_info["thread_id"]
        min_offset = _int_param(request, "min_offset", lo=0)
        wait = _wait_param(request, allow_zero=True)
        if wait is not None and min_offset is None:
            raise ApiProblem.bad_request("`wait` needs `min_offset` (what to wait for)")
        forwarded = await self._forward(request, thread_id, None, wait)
        if forwarded is not None:
            return forwarded
        if min_offset is not None:
            await self._await_offset(thread_id, min_offset, wait or 0.0)
        state = await self.backend.thread_state(thread_id)
        if state is None:
            raise ApiProblem(404, "not-found", f"thread {thread_id!r} is unknown")
        return web.json_response(dump(ThreadStateView.model_validate(state)))

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        authorize(request, self.settings)
        thread_id = request.match_info["thread_id"]
        lo, hi, default = HISTORY_LIMIT
        limit = _int_param(request, "limit", lo=lo, hi=hi)
        before_seq = _int_param(request, "before_seq", lo=1)
        include_rolled_back = _bool_param(request, "include_rolled_back", default=False)
        forwarded = await self._forward(request, thread_id, None, None)
        if forwarded is not None:
            return forwarded
        events, next_before_seq = await self.backend.history(
            thread_id,
            limit=default if limit is None else limit,
            before_seq=before_seq,
            include_rolled_back=include_rolled_back,
        )
        page = {"thread_id": thread_id, "events": events, "next_before_seq": next_before_seq}
        HistoryPage.model_validate(page)  # the documented shape; the events go out as stored
        return web.json_response(page)

    async def get_interaction(self, request: web.Request) -> web.StreamResponse:
        authorize(request, self.settings)
        thread_id = request.match_info["thread_id"]
        interaction_id = request.match_info["interaction_id"]
        forwarded = await self._forward(request, thread_id, None, None)
        if forwarded is not None:
            return forwarded
        found = await self.backend.interaction(thread_id, interaction_id)
        if found is None:
            raise ApiProblem(
                404,
                "not-found",
                f"interaction {interaction_id!r} is unknown in thread {thread_id!r} "
                "(or was purged)",
            )
        return web.json_response(dump(InteractionView.model_validate(found)))

    async def get_stream(self, request: web.Request) -> web.StreamResponse:
        authorize(request, self.settings)
        thread_id = request.match_info["thread_id"]
        start = request.query.get("from", "now")
        if start not in ("now", "beginning"):
            raise ApiProblem.bad_request(f"`from` must be `now` or `beginning`, got {start!r}")
        after = request.headers.get("Last-Event-ID") or None
        forwarded = await self._forward(request, thread_id, None, None, stream=True)
        if forwarded is not None:
            return forwarded
        messages = self.backend.stream(thread_id, after, start == "beginning")
        return await sse.serve(request, messages, self.heartbeat)

    # --- open endpoints ---------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(dump(Health()))

    async def readyz(self, _request: web.Request) -> web.StreamResponse:
        ready, reason = self.backend.readiness()
        if not ready:
            raise ApiProblem.unavailable(
                "not-ready", f"worker not ready: {reason or 'unknown'}", reason=reason
            )
        return web.json_response(dump(Ready()))

    async def openapi(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._openapi, content_type="application/json")

    # --- helpers ----------------------------------------------------------------------------

    async def _forward(
        self,
        request: web.Request,
        thread_id: str,
        body: bytes | None,
        wait: float | None,
        *,
        stream: bool = False,
    ) -> web.StreamResponse | None:
        """The owner's answer when another worker owns the thread; None when we do."""
        owner: Owner = self.backend.owner(thread_id)
        if not owner.ready:
            reason = owner.reason or "no ready owner"
            raise ApiProblem.unavailable(
                "no-owner",
                f"the partition of thread {thread_id!r} has no ready owner now ({reason})",
                reason=reason,
            )
        if owner.local:
            return None
        if was_forwarded(request):
            raise ApiProblem.unavailable(
                "forward-loop",
                f"forwarded here, but this worker does not own thread {thread_id!r} "
                "either: ownership is moving",
                reason="rebalancing",
            )
        if owner.url is None:
            raise ApiProblem.unavailable(
                "no-owner",
                f"the owner of thread {thread_id!r} has not advertised its URL yet",
                reason="owner unknown",
            )
        read_timeout = None if stream else (wait or 0.0) + FORWARD_MARGIN
        return await self.forwarder.forward(request, owner.url, body, read_timeout=read_timeout)

    async def _read_body(self, request: web.Request) -> bytes:
        cap = BODY_FACTOR * self.settings.max_input_bytes
        if request.content_length is not None and request.content_length > cap:
            raise _too_large(request.content_length, cap)
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise _too_large(size, cap)
            chunks.append(chunk)
        return b"".join(chunks)

    def _record(self, request: web.Request, thread_id: str, body: bytes) -> Any:
        """The body as the record to check: thread_id and event_id filled in from the request."""
        try:
            value = self.decoder.decode_value(body.strip())
        except DecodeError as exc:
            raise ApiProblem(400, "invalid-record", exc.reason) from None
        if not isinstance(value, dict):
            return value  # Client.prepare refuses it with the worker's words
        given = value.get("thread_id")
        if given is None:
            value["thread_id"] = thread_id
        elif given != thread_id:
            raise ApiProblem.bad_request(
                f"the body's thread_id {given!r} differs from the path's {thread_id!r} "
                "(leave it out, or make them equal)"
            )
        key = request.headers.get("Idempotency-Key")
        if value.get("event_id") is None:
            value["event_id"] = key if key else str(uuid.uuid4())
        elif key and key != value["event_id"]:
            raise ApiProblem.bad_request(
                f"the Idempotency-Key header {key!r} differs from the body's event_id "
                f"{value['event_id']!r}"
            )
        return value

    async def _await_offset(self, thread_id: str, min_offset: int, wait: float) -> None:
        """Return once offset `min_offset` of the thread's partition is handled, else 504."""
        deadline = time.monotonic() + wait
        while True:
            handled = await self.backend.handled_offset(thread_id)
            if handled > min_offset:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiProblem(
                    504,
                    "offset-timeout",
                    f"offset {min_offset} of thread {thread_id!r}'s partition was not handled "
                    f"within {wait:g} s (handled up to {handled - 1})",
                    min_offset=min_offset,
                    handled_offset=handled,
                )
            await asyncio.sleep(min(self.poll_interval, left))


# Where `add_routes` leaves the API on the application (`app[API_KEY]`).
API_KEY: web.AppKey[ThreadApi] = web.AppKey("orchestral_thread_api")


def _too_large(size: int, cap: int) -> ApiProblem:
    return ApiProblem(
        413,
        "too-large",
        f"request body is {size} bytes, over {cap} (twice ORCHESTRAL_MAX_INPUT_BYTES); "
        "the encoded record must fit ORCHESTRAL_MAX_INPUT_BYTES",
    )


def _int_param(
    request: web.Request, name: str, *, lo: int | None = None, hi: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiProblem.bad_request(f"`{name}` must be an integer, got {raw!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ApiProblem.bad_request(f"`{name}` must be {bounds}, got {value}")
    return value


def _wait_param(request: web.Request, *, allow_zero: bool) -> float | None:
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low_ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and low_ok and value <= MAX_WAIT):
        bounds = f"0 <= wait <= {MAX_WAIT:g}" if allow_zero else f"0 < wait <= {MAX_WAIT:g}"
        raise ApiProblem.bad_request(f"`wait` must be seconds with {bounds}, got {raw!r}")
    return value


def _bool_param(request: web.Request, name: str, *, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiProblem.bad_request(f"`{name}` must be `true` or `false`, got {raw!r}")
