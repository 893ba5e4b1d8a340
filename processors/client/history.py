"""The seed's `query_history`, over the store topic's records of one thread. Pure.

- `limit == 0`: every event, oldest first;
- `limit > 0`: the newest `limit` events, newest first.
History order is `seq` (the thread's order), not timestamps, so ties cannot reorder it.
The store answers alone (it is kept forever, other topics are not): an interaction cancelled by
the `rollback` policy is known by its `turn_rolled_back` mark, and its events are left out,
wherever they sit in the thread; the mark itself is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def rolled_back_ids(events: Iterable[dict[str, Any]]) -> set[str]:
    """The interactions named by the store's `turn_rolled_back` marks (seed-semantics §8.4)."""
    return {iid for e in events if (iid := _rolled_back_by(e)) is not None}


def _rolled_back_by(event: dict[str, Any]) -> str | None:
    """The interaction a mark names; None for any other record (an interaction's own trace)."""
    payload = event.get("payload")
    if (
        event.get("type") != "system_trace"
        or event.get("interaction_id") is not None
        or not isinstance(payload, dict)
        or payload.get("category") != "runtime_lifecycle"
        or payload.get("event_type") != "turn_rolled_back"
    ):
        return None
    iid = payload.get("interaction_id")
    return iid if isinstance(iid, str) else None


def query_history(events: Iterable[dict[str, Any]], limit: int = 0) -> list[dict[str, Any]]:
    # A record re-emitted after a crash is an identical copy: keep one per seq.
    by_seq = {e["seq"]: e for e in events}
    rolled_back = rolled_back_ids(by_seq.values())
    kept = [by_seq[s] for s in sorted(by_seq) if by_seq[s].get("interaction_id") not in rolled_back]
    if limit <= 0:
        return kept
    return kept[::-1][:limit]
