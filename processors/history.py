"""The seed's `query_history`, over the store topic's records of one thread. Pure.

- `limit == 0`: every event, oldest first;
- `limit > 0`: the newest `limit` events, newest first.
History order is `seq` (the thread's order), not timestamps, so ties cannot reorder it.
Events of interactions cancelled by the `rollback` policy are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def rolled_back_ids(outcome_records: Iterable[dict[str, Any]]) -> set[str]:
    return {
        r["interaction_id"]
        for r in outcome_records
        if r.get("type") == "interaction" and r.get("rolled_back")
    }


def query_history(
    events: Iterable[dict[str, Any]], rolled_back: set[str], limit: int = 0
) -> list[dict[str, Any]]:
    # A record re-emitted after a crash is an identical copy: keep one per seq.
    by_seq = {e["seq"]: e for e in events}
    kept = [by_seq[s] for s in sorted(by_seq) if by_seq[s].get("interaction_id") not in rolled_back]
    if limit <= 0:
        return kept
    return kept[::-1][:limit]
