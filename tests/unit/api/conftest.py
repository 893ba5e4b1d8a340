"""Fixtures of the thread API tests: a real HTTP server for a fake backend (tests/support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from config.settings import Settings
from processors.api import add_routes
from tests.support.api_fakes import FakeBackend, Serve, make_settings


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """serve(backend, settings=..., **add_routes options) -> the base URL of a running app."""
    runners: list[web.AppRunner] = []

    async def start(backend: FakeBackend, settings: Settings | None = None, **options: Any) -> str:
        app = web.Application()
        add_routes(app, backend, settings or make_settings(), **options)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()
