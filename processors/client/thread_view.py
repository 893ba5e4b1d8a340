"""A thread's state as users read it (`orchestral-stream thread T`)."""

from __future__ import annotations

from typing import Any

from config.settings import Settings
from processors.core import ThreadState, effective_policy


def describe_state(state: ThreadState, settings: Settings) -> dict[str, Any]:
    policy = effective_policy(None, state.policy, settings.limits())
    return {
        "thread_id": state.thread_id,
        "known": True,
        "policy": {
            "name": policy.name,
            "max_parallel": policy.max_parallel,
            "max_queue_depth": policy.max_queue_depth,
            "configured": state.policy is not None,
        },
        "max_interactions_per_thread": state.max_interactions
        or settings.max_interactions_per_thread,
        "auto_cleanup": settings.auto_cleanup if state.auto_cleanup is None else state.auto_cleanup,
        "busy": state.busy,
        "interactions": [
            {
                "id": i.id,
                "state": i.state,
                "started_at": i.started_at,
                "ended_at": i.ended_at,
                "task_ids": i.task_ids,
                "wait_kind": i.wait_kind,
                "rolled_back": i.rolled_back,
                "cause_event_id": i.cause_event_id,
            }
            for i in state.interactions.values()
        ],
        "queue": [{"event_id": q.event_id, "type": q.event["type"]} for q in state.queue],
        "last_seq": state.seq,
        "updated_at": state.updated_at,
        "position": {"partition": state.partition, "offset": state.offset},
    }
