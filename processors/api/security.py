"""The bearer token of `/threads` calls, and the rule that keeps an open API off the network."""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

from config.settings import Settings
from processors.api.problems import ApiProblem

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the names of localhost; a wildcard or a name is not."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def bind_problem(settings: Settings) -> str | None:
    """Why a worker must refuse to start its web server, or None.

    Bound to a non-loopback address, the thread API lets anyone who reaches it write to any
    thread: that needs ORCHESTRAL_API_TOKEN.
    """
    token = settings.api_token
    if is_loopback(settings.web_host) or (token is not None and token.get_secret_value()):
        return None
    return (
        f"ORCHESTRAL_WEB_HOST={settings.web_host} is not a loopback address and "
        "ORCHESTRAL_API_TOKEN is not set: anyone reaching it could write to any thread. "
        "Set ORCHESTRAL_API_TOKEN (clients send `Authorization: Bearer <token>`) or bind "
        "to 127.0.0.1"
    )


def authorize(request: web.Request, settings: Settings) -> None:
    """Raise a 401 problem unless the request carries the configured bearer token."""
    token = settings.api_token
    if token is None or not token.get_secret_value():
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiProblem(
            401,
            "unauthorized",
            "this API needs `Authorization: Bearer <ORCHESTRAL_API_TOKEN>`",
            headers={"WWW-Authenticate": 'Bearer realm="orchestral-stream"'},
        )
