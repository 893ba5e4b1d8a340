"""`/openapi.json`: the API described in OpenAPI 3.1, generated from `models.py`.

OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic writes: the components are
the models' own schemas, with references under `#/components/schemas/`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from processors.api.models import (
    Accepted,
    Handled,
    Health,
    HistoryPage,
    InputRecordBody,
    InteractionView,
    Problem,
    Ready,
    ThreadStateView,
)
from processors.api.problems import PROBLEM_CONTENT_TYPE

REF = "#/components/schemas/{model}"
_RESPONSES: tuple[type[BaseModel], ...] = (
    Accepted, Handled, HistoryPage, InteractionView, ThreadStateView, Health, Ready, Problem,
)  # fmt: skip
# Over HTTP these input fields may be left out (the path, the server's clock fill them).
_OPTIONAL_OVER_HTTP = ("thread_id", "timestamp")

_ERRORS = {
    400: "Bad parameter, or a record the worker would refuse (its reason in `detail`)",
    401: "Missing or wrong bearer token (when ORCHESTRAL_API_TOKEN is set)",
    404: "Unknown thread or interaction",
    413: "Record over ORCHESTRAL_MAX_INPUT_BYTES",
    503: "The thread's partition has no ready owner (rebalance, restore): retry after Retry-After",
    504: "Not done within `wait`",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problem(status: int, description: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description or _ERRORS[status],
        "content": {PROBLEM_CONTENT_TYPE: {"schema": _ref(Problem)}},
    }
    if status == 503:
        answer["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return answer


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_THREAD = _path_param("thread_id", "The thread id (the Kafka key of its records).")
_WAIT_POST = _query(
    "wait",
    {"type": "number", "exclusiveMinimum": 0, "maximum": 30},
    "Seconds to wait for the outcome: 200 with it, or 504.",
)
_WAIT_GET = _query(
    "wait",
    {"type": "number", "minimum": 0, "maximum": 30, "default": 0},
    "With min_offset: seconds to wait for it to be handled, else 504.",
)
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _schemas() -> dict[str, Any]:
    pairs = [(model, "serialization") for model in _RESPONSES]
    pairs.append((InputRecordBody, "validation"))
    _, top = models_json_schema(pairs, ref_template=REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for name in ("UserInput", "AssistantOutput", "Artifact", "ExternalEvent", "SystemTrace",
                 "Command"):  # fmt: skip
        schema = schemas.get(name)
        if schema and "required" in schema:
            schema["required"] = [f for f in schema["required"] if f not in _OPTIONAL_OVER_HTTP]
    return schemas


def build_openapi() -> dict[str, Any]:
    """The whole document (built once per process)."""
    threads = ["threads"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orchestral-stream thread API",
            "version": "2",
            "description": "Any worker answers for any thread: it forwards to the owner of the "
            "thread's partition. Errors are RFC 9457 problem documents.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "ORCHESTRAL_API_TOKEN, when the worker sets one.",
                }
            },
        },
        "paths": {
            "/threads/{thread_id}/events": {
                "post": {
                    "operationId": "postEvent",
                    "summary": "Produce one input record (event or command) to the thread",
                    "tags": threads,
                    "security": _SECURED,
                    "parameters": [
                        _THREAD,
                        _WAIT_POST,
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1},
                            "description": "The record's event_id when the body has none.",
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(InputRecordBody)}},
                    },
                    "responses": {
                        "202": _json(Accepted, "Produced"),
                        "200": _json(Handled, "Produced and answered (`wait`)"),
                        "400": _problem(400),
                        "401": _problem(401),
                        "413": _problem(413),
                        "503": _problem(503),
                        "504": _problem(504, "No outcome within `wait` (`event_id` says which)"),
                    },
                }
            },
            "/threads/{thread_id}": {
                "get": {
                    "operationId": "getThread",
                    "summary": "The thread's state",
                    "tags": threads,
                    "security": _SECURED,
                    "parameters": [
                        _THREAD,
                        _query(
                            "min_offset",
                            {"type": "integer", "minimum": 0},
                            "Answer once the owner has handled this offset of the thread's "
                            "partition (read-your-writes after a POST).",
                        ),
                        _WAIT_GET,
                    ],
                    "responses": {
                        "200": _json(ThreadStateView, "The state"),
                        "400": _problem(400),
                        "401": _problem(401),
                        "404": _problem(404, "Unknown thread"),
                        "503": _problem(503),
                        "504": _problem(504, "min_offset not handled within `wait`"),
                    },
                }
            },
            "/threads/{thread_id}/history": {
                "get": {
                    "operationId": "getHistory",
                    "summary": "The thread's stored events, newest first",
                    "tags": threads,
                    "security": _SECURED,
                    "parameters": [
                        _THREAD,
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                            "Events per page.",
                        ),
                        _query(
                            "before_seq",
                            {"type": "integer", "minimum": 1},
                            "Only events with seq below it (the previous page's next_before_seq).",
                        ),
                        _query(
                            "include_rolled_back",
                            {"type": "boolean", "default": False},
                            "Include the events of rolled-back turns.",
                        ),
                    ],
                    "responses": {
                        "200": _json(HistoryPage, "A page (an unknown thread has no events)"),
                        "400": _problem(400),
                        "401": _problem(401),
                        "503": _problem(503),
                    },
                }
            },
            "/threads/{thread_id}/interactions/{interaction_id}": {
                "get": {
                    "operationId": "getInteraction",
                    "summary": "One interaction of the thread",
                    "tags": threads,
                    "security": _SECURED,
                    "parameters": [_THREAD, _path_param("interaction_id", "The interaction id.")],
                    "responses": {
                        "200": _json(InteractionView, "The interaction"),
                        "401": _problem(401),
                        "404": _problem(404, "Unknown (or purged) interaction"),
                        "503": _problem(503),
                    },
                }
            },
            "/threads/{thread_id}/stream": {
                "get": {
                    "operationId": "streamThread",
                    "summary": "The thread's store and outcome records as they are written",
                    "tags": threads,
                    "security": _SECURED,
                    "parameters": [
                        _THREAD,
                        _query(
                            "from",
                            {"type": "string", "enum": ["now", "beginning"], "default": "now"},
                            "Where to start when not resuming.",
                        ),
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "Resume right after this message id.",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Server-sent events: `id:`, `event:` (store, outcome "
                            "or interaction), `data:` the record as one line of JSON; a comment "
                            "line every 15 s keeps the connection open.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _problem(400),
                        "401": _problem(401),
                        "503": _problem(503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "200 while the process runs",
                    "security": [],
                    "responses": {"200": _json(Health, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Holds partitions, has restored them, is processing",
                    "security": [],
                    "responses": {
                        "200": _json(Ready, "Ready"),
                        "503": _problem(503, "Not ready: `reason` says why"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }
