"""Every request and response body of the thread API, as pydantic models.

The routes build their answers through these models and `openapi.py` generates the document
from the same classes, so the two cannot drift apart. Records of the wire contract are reused
from `schemas.records` (`StoredEvent`, `Outcome`, the input records).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from schemas.records import InputRecord, InteractionState, Outcome, PolicyName, StoredEvent


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Accepted(_Body):
    """202: the record was produced to the events topic."""

    event_id: str
    thread_id: str
    partition: int
    offset: int


class Handled(Accepted):
    """200 (`?wait=S`): the record was produced and the worker answered it."""

    outcome: Outcome


class HistoryPage(_Body):
    """A page of the thread's history, newest first; `next_before_seq` fetches the next one."""

    thread_id: str
    events: list[StoredEvent]
    next_before_seq: int | None


class InteractionView(_Body):
    """One interaction of a thread."""

    id: str
    state: InteractionState
    started_at: str
    ended_at: str | None
    task_ids: list[str]
    wait_kind: str | None
    rolled_back: bool
    cause_event_id: str


class PolicyView(_Body):
    name: PolicyName
    max_parallel: int
    max_queue_depth: int
    configured: bool = Field(description="Set by `configure` (else the worker's default).")


class QueuedView(_Body):
    event_id: str
    type: str


class PositionView(_Body):
    partition: int = Field(description="The input partition of the last record applied.")
    offset: int = Field(description="Its offset (-1: none yet).")


class ThreadStateView(_Body):
    """A thread's state, as `orchestral-stream thread` prints it."""

    thread_id: str
    known: bool
    policy: PolicyView
    max_interactions_per_thread: int
    auto_cleanup: bool
    busy: bool
    interactions: list[InteractionView]
    queue: list[QueuedView]
    last_seq: int
    updated_at: str | None
    position: PositionView


class Health(_Body):
    status: Literal["ok"] = "ok"


class Ready(_Body):
    status: Literal["ready"] = "ready"


class Problem(BaseModel):
    """RFC 9457 problem document (`application/problem+json`); extension members allowed."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URN naming the kind of problem.")
    title: str
    status: int
    detail: str
    event_id: str | None = Field(None, description="504 after a POST: the record's event id.")
    reason: str | None = Field(None, description="503: why no ready owner / worker not ready.")


class InputRecordBody(RootModel[InputRecord]):
    """One input record (event or command). Over HTTP `thread_id` and `timestamp` may be left
    out: the path gives the one, the server's clock the other."""


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as JSON-ready data."""
    return model.model_dump(mode="json")
