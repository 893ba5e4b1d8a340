"""Reading threads over a worker's HTTP thread API (contract v2), for the CLI and embedders.

Any worker answers for any thread (it forwards to the owner), so one URL is enough:
`ORCHESTRAL_API_URL`, by default the local worker's. Reads cost what they return; nothing here
scans a topic (`Client.history_from_topics` still does, for debugging without a worker).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from config.settings import Settings
from schemas.errors import OrchestralError

PAGE = 1000  # the most events one history request returns


class ThreadApiError(OrchestralError):
    """The thread API answered with an error."""


class ThreadApiUnreachable(ThreadApiError):
    """No thread API answers at ORCHESTRAL_API_URL."""


class ThreadApiClient:
    def __init__(self, settings: Settings, *, timeout: float = 30.0) -> None:
        self.settings = settings
        self.base = settings.api_url
        headers = {}
        if settings.api_token is not None:
            headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        )

    async def __aenter__(self) -> ThreadApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def thread(self, thread_id: str) -> dict[str, Any] | None:
        """The thread's state (as `orchestral-stream thread` prints it), None if unknown."""
        return await self._get(f"/threads/{_quote(thread_id)}", {})

    async def history(self, thread_id: str, limit: int = 0) -> list[dict[str, Any]]:
        """The seed's `query_history`: `limit` > 0 the newest `limit` events, newest first;
        0 every event, oldest first (fetched a page at a time)."""
        events: list[dict[str, Any]] = []
        before: int | None = None
        while limit == 0 or len(events) < limit:
            size = PAGE if limit == 0 else min(PAGE, limit - len(events))
            params: dict[str, str] = {"limit": str(size)}
            if before is not None:
                params["before_seq"] = str(before)
            page = await self._get(f"/threads/{_quote(thread_id)}/history", params)
            assert page is not None  # history answers 200 for any thread
            events.extend(page["events"])
            before = page["next_before_seq"]
            if before is None:
                break
        return events if limit else events[::-1]

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        url = self.base + path
        try:
            async with self._session.get(url, params=params) as response:
                if response.status == 404:
                    return None
                body = await response.json(content_type=None)
                if response.status != 200:
                    detail = body.get("detail") if isinstance(body, dict) else None
                    raise ThreadApiError(f"{url}: {response.status} {detail or response.reason}")
                result: dict[str, Any] = body
                return result
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ThreadApiUnreachable(
                f"no thread API answers at {self.base} ({exc.__class__.__name__}): is a worker "
                "running? (ORCHESTRAL_API_URL; `--from-topics` reads the topics instead)"
            ) from None


def _quote(thread_id: str) -> str:
    from urllib.parse import quote

    return quote(thread_id, safe="")
