"""/openapi.json: OpenAPI 3.1, every route, and each response schema fits a real response."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from processors.api import add_routes
from tests.support.api_fakes import (
    THREAD,
    interaction,
    make_settings,
    stored,
    thread_state,
)

REF = "#/components/schemas/"


class Mismatch(AssertionError):
    pass


def check(value: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> None:
    """A small JSON Schema check (the keywords pydantic writes for these models)."""
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith(REF), ref
        check(value, doc["components"]["schemas"][ref.removeprefix(REF)], doc, where)
    for sub in schema.get("allOf", []):
        check(value, sub, doc, where)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = 0
            for sub in schema[key]:
                try:
                    check(value, sub, doc, where)
                    fits += 1
                except Mismatch:
                    pass
            if not fits or (key == "oneOf" and fits > 1):
                raise Mismatch(f"{where}: {value!r} fits {fits} of {key}")
    if "const" in schema and value != schema["const"]:
        raise Mismatch(f"{where}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise Mismatch(f"{where}: {value!r} not in {schema['enum']}")
    kind = schema.get("type")
    if kind is not None:
        types = {
            "object": dict, "array": list, "string": str, "boolean": bool,
            "null": type(None), "integer": int, "number": (int, float),
        }  # fmt: skip
        kinds = kind if isinstance(kind, list) else [kind]
        ok = any(
            isinstance(value, types[k])
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            raise Mismatch(f"{where}: {value!r} is not {kind}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                raise Mismatch(f"{where}: missing {name}")
        props = schema.get("properties", {})
        for name, item in value.items():
            if name in props:
                check(item, props[name], doc, f"{where}.{name}")
            elif schema.get("additionalProperties") is False:
                raise Mismatch(f"{where}: unexpected {name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], doc, f"{where}[{i}]")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and "minimum" in schema and value < schema["minimum"]:
        raise Mismatch(f"{where}: {value} < {schema['minimum']}")


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for v in node.values() for r in _refs(v)] + (
            [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        )
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.fixture
async def document(serve, http, backend):
    base = await serve(backend)
    async with http.get(f"{base}/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        return await response.json()


async def test_it_is_openapi_3_1_with_the_bearer_scheme(document):
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, item in document["paths"].items():
        for operation in item.values():
            expected = [{"bearer": []}] if path.startswith("/threads") else []
            assert operation["security"] == expected, path
            assert operation["responses"], path
            if path.startswith("/threads"):
                assert "401" in operation["responses"] and "503" in operation["responses"]


async def test_every_route_and_path_parameter_is_described(document, backend):
    app = web.Application()
    add_routes(app, backend, make_settings())
    routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == described
    for path, item in document["paths"].items():
        for operation in item.values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), path


async def test_every_reference_resolves(document):
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert ref.startswith(REF) and ref.removeprefix(REF) in schemas, ref


def _schema(document: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    answer = document["paths"][path][method]["responses"][str(status)]
    [(_, media)] = answer["content"].items()
    return media["schema"]


async def test_each_response_schema_fits_a_real_response(serve, http, backend, document):
    backend.states[THREAD] = thread_state(THREAD)
    backend.events[THREAD] = [stored(THREAD, 1), stored(THREAD, 2, type="system_trace",
                              level="info", payload={"category": "x"})]  # fmt: skip
    backend.interactions[(THREAD, "i1")] = interaction()
    base = await serve(backend)
    record = {"type": "user_input", "payload": {"message": "hi"}}
    thread = f"/threads/{THREAD}"
    cases = [
        ("post", "/threads/{thread_id}/events", f"{thread}/events", 202),
        ("post", "/threads/{thread_id}/events", f"{thread}/events?wait=1", 200),
        ("post", "/threads/{thread_id}/events", f"{thread}/events?wait=99", 400),
        ("get", "/threads/{thread_id}", thread, 200),
        ("get", "/threads/{thread_id}", "/threads/nobody", 404),
        ("get", "/threads/{thread_id}", f"{thread}?min_offset=5", 504),
        ("get", "/threads/{thread_id}/history", f"{thread}/history", 200),
        (
            "get",
            "/threads/{thread_id}/interactions/{interaction_id}",
            f"{thread}/interactions/i1",
            200,
        ),
        (
            "get",
            "/threads/{thread_id}/interactions/{interaction_id}",
            f"{thread}/interactions/x",
            404,
        ),
        ("get", "/healthz", "/healthz", 200),
        ("get", "/readyz", "/readyz", 200),
    ]
    for method, template, url, status in cases:
        async with http.request(method, base + url, json=record) as response:
            assert response.status == status, (url, await response.text())
            body = await response.json(content_type=None)
        check(body, _schema(document, template, method, status), document)
    backend.answer_outcomes = False
    async with http.post(f"{base}{thread}/events?wait=0.05", json=record) as response:
        assert response.status == 504
        body = await response.json(content_type=None)
    check(body, _schema(document, "/threads/{thread_id}/events", "post", 504), document)
    backend.ready = (False, "starting")
    async with http.get(f"{base}/readyz") as response:
        body = await response.json(content_type=None)
    check(body, _schema(document, "/readyz", "get", 503), document)


async def test_the_check_catches_a_wrong_body(document):
    schema = _schema(document, "/threads/{thread_id}/history", "get", 200)
    with pytest.raises(Mismatch):
        check(
            {"thread_id": THREAD, "events": [{"seq": 1}], "next_before_seq": None}, schema, document
        )
    with pytest.raises(Mismatch):
        check(
            {"thread_id": THREAD, "events": [], "next_before_seq": None, "x": 1}, schema, document
        )


async def test_the_request_body_leaves_thread_id_and_timestamp_optional(document):
    schemas = document["components"]["schemas"]
    body = document["paths"]["/threads/{thread_id}/events"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"] == REF + "InputRecordBody"
    for name in ("UserInput", "Command"):
        required = schemas[name]["required"]
        assert "type" in required
        assert "thread_id" not in required and "timestamp" not in required
    check({"type": "user_input", "payload": {}}, {"$ref": REF + "InputRecordBody"}, document)
