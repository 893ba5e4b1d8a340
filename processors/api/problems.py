"""RFC 9457 problem documents: the one error type of the API and where it becomes a response.

Routes raise `ApiProblem`; `problem_middleware` turns it, aiohttp's own HTTP errors on API paths
(an unknown path, a wrong method) and any unexpected exception into an
`application/problem+json` response. A client never gets a traceback or an HTML error page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Problem types are URNs: stable names a client can switch on, not pages to fetch.
TYPE_PREFIX = "urn:orchestral-stream:problem:"

# slug -> title (RFC 9457: the title does not change from occurrence to occurrence).
TITLES: dict[str, str] = {
    "invalid-record": "The record would not be accepted by the worker",
    "bad-request": "Bad request",
    "unauthorized": "Missing or wrong bearer token",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "too-large": "Record too large",
    "no-owner": "The thread has no ready owner",
    "forward-loop": "Request already forwarded once",
    "not-ready": "Worker not ready",
    "outcome-timeout": "No outcome in time",
    "offset-timeout": "Offset not handled in time",
    "internal": "Internal server error",
    "http-error": "HTTP error",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiProblem(Exception):
    """One problem: its status, its type (a slug of TITLES), a detail, extension members."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def document(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.slug,
            "title": TITLES.get(self.slug, TITLES["http-error"]),
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }

    # --- the problems the routes raise ------------------------------------------------------

    @classmethod
    def bad_request(cls, detail: str, **extensions: Any) -> ApiProblem:
        return cls(400, "bad-request", detail, **extensions)

    @classmethod
    def unavailable(cls, slug: str, detail: str, **extensions: Any) -> ApiProblem:
        """503, with Retry-After: 1 (a rebalance or a restore is usually over in seconds)."""
        return cls(503, slug, detail, headers={"Retry-After": "1"}, **extensions)


def problem_response(problem: ApiProblem) -> web.Response:
    """The one place a problem becomes a response."""
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.document()).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def _from_http_error(exc: web.HTTPException) -> ApiProblem:
    slug = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        exc.status, "http-error"
    )
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return ApiProblem(exc.status, slug, exc.reason, headers=headers)


def problem_middleware(prefixes: Iterable[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware for the API's paths (those under `prefixes`); other paths pass untouched."""
    api_prefixes = tuple(prefixes)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(api_prefixes):
            return await handler(request)
        try:
            return await handler(request)
        except ApiProblem as problem:
            return problem_response(problem)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return problem_response(_from_http_error(exc))
        except (ConnectionResetError, ConnectionAbortedError):
            raise  # the client went away: nobody to answer
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return problem_response(
                ApiProblem(500, "internal", "unexpected error; the worker logged it")
            )

    return middleware
