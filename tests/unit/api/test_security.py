"""The bearer token, the open endpoints, and the rule that keeps an open API off the network."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from config.settings import load_settings
from processors.api import bind_problem
from schemas.errors import ConfigurationError
from tests.support.api_fakes import THREAD, make_settings, thread_state

TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
async def test_threads_need_the_token(serve, http, backend, authorization):
    backend.states[THREAD] = thread_state(THREAD)
    base = await serve(backend, make_settings(api_token=TOKEN))
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("GET", ""), ("POST", "/events"), ("GET", "/history"),
                         ("GET", "/interactions/i1"), ("GET", "/stream")]:  # fmt: skip
        url = f"{base}/threads/{THREAD}{path}"
        async with http.request(method, url, headers=headers, json={}) as response:
            assert response.status == 401, (method, path)
            assert response.content_type == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in await response.text()
    assert backend.submitted == []


async def test_the_right_token_passes(serve, http, backend):
    backend.states[THREAD] = thread_state(THREAD)
    base = await serve(backend, make_settings(api_token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{base}/threads/{THREAD}", headers=headers) as response:
        assert response.status == 200
    async with http.get(
        f"{base}/threads/{THREAD}", headers={"Authorization": f"bearer {TOKEN}"}
    ) as response:
        assert response.status == 200


async def test_no_token_configured_means_no_check(serve, http, backend):
    backend.states[THREAD] = thread_state(THREAD)
    base = await serve(backend)
    async with http.get(f"{base}/threads/{THREAD}") as response:
        assert response.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json"])
async def test_open_endpoints_need_no_token(serve, http, backend, path):
    base = await serve(backend, make_settings(api_token=TOKEN))
    async with http.get(f"{base}{path}") as response:
        assert response.status == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    assert bind_problem(make_settings(web_host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "worker-1.internal"])
def test_non_loopback_needs_a_token(host):
    problem = bind_problem(make_settings(web_host=host))
    assert problem is not None
    assert "ORCHESTRAL_API_TOKEN" in problem and host in problem
    assert bind_problem(make_settings(web_host=host, api_token=TOKEN)) is None
    assert bind_problem(make_settings(web_host=host, api_token="")) is not None


def test_token_and_advertised_url_settings(monkeypatch):
    monkeypatch.setenv("ORCHESTRAL_API_TOKEN", TOKEN)
    monkeypatch.setenv("ORCHESTRAL_ADVERTISED_URL", "http://worker-2:7000/")
    loaded = load_settings()
    assert loaded.api_token == SecretStr(TOKEN)
    assert TOKEN not in repr(loaded)
    assert loaded.advertised_url == "http://worker-2:7000"
    monkeypatch.delenv("ORCHESTRAL_ADVERTISED_URL")
    assert (
        load_settings(web_host="10.1.2.3", web_port=6100).advertised_url == "http://10.1.2.3:6100"
    )
    assert load_settings(web_host="::1").advertised_url == "http://[::1]:6066"


def test_a_bad_advertised_url_names_the_variable(monkeypatch):
    monkeypatch.setenv("ORCHESTRAL_ADVERTISED_URL", "worker-2:7000")
    with pytest.raises(ConfigurationError, match="ORCHESTRAL_ADVERTISED_URL"):
        load_settings()
