"""The `avro` codec: round trips, framing, schema ids, malformed input, evolution."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.core import STORE, replay
from schemas.avro_codec import AvroCodec
from schemas.codec import InputDecoder
from schemas.errors import DecodeError
from schemas.json_codec import JsonCodec
from schemas.records import (
    EVENT_FIELDS,
    Command,
    InteractionRecord,
    Outcome,
    StoredEvent,
    parse_input,
)
from schemas.resolver import LocalSchemaResolver, load_schemas, schema_id
from tests.support.strategies.byte_edits import byte_edits, mutate

AVRO = AvroCodec()
JSON = JsonCodec()
RESOLVER = LocalSchemaResolver()

THREAD = "thread-7f3c2a9e"
IID = "5b1f0c3e-8d2a-5e47-9c6b-3a7d1e9f2b80"
TS = "2026-03-28T10:15:42.123456789Z"
EXTENSIONS = ("seq", "event_id", "concurrency", "expected_interaction_id")

# --- example records, as the core builds them (wire field order) ----------------------------

STORED: list[dict[str, Any]] = [
    {
        "type": "user_input",
        "thread_id": THREAD,
        "interaction_id": IID,
        "payload": {"text": "Résumé the report ✓", "attachments": [{"id": "a-1", "pages": 12}]},
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
        "seq": 1,
        "event_id": "orchestral.events:3:1048576",
    },
    {
        "type": "assistant_output",
        "thread_id": THREAD,
        "interaction_id": IID,
        "payload": {"task_id": "task-1", "message": "done", "result": {"status": "completed"}},
        "task_id": "task-1",
        "step_id": "step-2",
        "timestamp": "2026-03-28T10:15:43.500Z",
        "seq": 2,
        "event_id": "exec-17",
    },
    {
        "type": "artifact",
        "thread_id": THREAD,
        "interaction_id": IID,
        "reference_id": "s3://bucket/report.pdf",
        "task_id": "task-1",
        "step_id": None,
        "timestamp": "2026-03-28T10:15:44Z",
        "seq": 3,
        "event_id": "art-1",
    },
    {
        "type": "external_event",
        "thread_id": THREAD,
        "interaction_id": IID,
        "kind": "webhook",
        "payload": [1, 2.5, -0.0, True, None, "x", 10**30],
        "task_id": None,
        "step_id": None,
        "timestamp": "2026-03-28T10:15:45.000001Z",
        "seq": 4,
        "event_id": "orchestral.events:3:1048580",
    },
    {
        "type": "system_trace",
        "thread_id": THREAD,
        "interaction_id": None,
        "level": "info",
        "payload": None,
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
        "seq": 2**40,
        "event_id": "trace-1",
    },
]

INPUTS: list[dict[str, Any]] = [
    {
        "type": "user_input",
        "thread_id": THREAD,
        "interaction_id": None,
        "payload": "hello",
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
    },
    {
        "type": "user_input",
        "thread_id": THREAD,
        "interaction_id": None,
        "payload": {"text": "and also this"},
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
        "event_id": "client-42",
        "concurrency": {"name": "queue", "max_queue_depth": 3},
    },
    {
        "type": "external_event",
        "thread_id": THREAD,
        "interaction_id": None,
        "kind": "payment",
        "payload": {"amount": 12.5},
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
        "event_id": "pay-9",
        "concurrency": {"name": "merge"},
        "expected_interaction_id": IID,
    },
    {
        "type": "system_trace",
        "thread_id": THREAD,
        "interaction_id": IID,
        "level": "debug",
        "payload": {},
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
        "concurrency": {"name": "parallel", "max_parallel": 2, "max_queue_depth": 5},
    },
]

COMMANDS: list[dict[str, Any]] = [
    {
        "type": "command",
        "command": "complete",
        "thread_id": THREAD,
        "interaction_id": IID,
        "event_id": "cmd-1",
        "timestamp": TS,
    },
    {
        "type": "command",
        "command": "wait_event",
        "thread_id": THREAD,
        "interaction_id": IID,
        "timestamp": TS,
        "kind": "payment",
    },
    {
        "type": "command",
        "command": "add_task",
        "thread_id": THREAD,
        "interaction_id": IID,
        "event_id": "cmd-3",
        "timestamp": TS,
        "task_id": "task-2",
    },
    {"type": "command", "command": "cancel_all", "thread_id": THREAD, "timestamp": TS},
    {
        "type": "command",
        "command": "configure",
        "thread_id": THREAD,
        "event_id": "cfg-1",
        "timestamp": TS,
        "policy": {"name": "parallel", "max_parallel": 3},
        "max_interactions_per_thread": 20,
        "auto_cleanup": False,
    },
]


def _outcome(status: str, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "outcome",
        "thread_id": THREAD,
        "source_event_id": "orchestral.events:3:7",
        "status": status,
        "interaction_id": IID,
        "reason": None,
        "queue_position": None,
        "timestamp": TS,
    }
    return record | fields


OUTCOMES: list[dict[str, Any]] = [
    _outcome("started"),
    _outcome("queued", interaction_id=None, queue_position=2),
    _outcome("rejected", reason="System is busy processing another request"),
    _outcome("invalid", source_event_id=None, interaction_id=None, reason="bad", timestamp=None),
    _outcome("duplicate", interaction_id=None),
]


def _interaction(
    state: str,
    previous: str | None,
    rolled_back: bool = False,
    reason: str | None = None,
    event: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "type": "interaction",
        "thread_id": THREAD,
        "interaction_id": IID,
        "state": state,
        "previous_state": previous,
        "cause_event_id": "orchestral.events:3:7",
        "timestamp": TS,
        "rolled_back": rolled_back,
        "reason": reason,
        "event": event,
    }


INTERACTIONS = [
    _interaction("active", None, event=STORED[0]),
    _interaction("active", "waiting_user", event=STORED[0]),
    _interaction("waiting_user", "active"),
    _interaction("cancelled", "active", rolled_back=True),
    _interaction("completed", "active"),
    _interaction("failed", "active", reason="idle_timeout"),
]

OUTPUTS = STORED + OUTCOMES + INTERACTIONS
ALL = OUTPUTS + INPUTS + COMMANDS
ENCODED = [AVRO.encode(r) for r in ALL]


def _id(record: dict[str, Any]) -> str:
    return f"{record['type']}-{record.get('command') or record.get('status') or ''}"


# --- the examples are valid records ---------------------------------------------------------


@pytest.mark.parametrize("record", STORED, ids=_id)
def test_stored_examples_fit_the_model(record: dict[str, Any]) -> None:
    StoredEvent.model_validate(record)


def test_output_examples_fit_the_models() -> None:
    for record in OUTCOMES:
        Outcome.model_validate(record)
    for record in INTERACTIONS:
        InteractionRecord.model_validate(record)


@pytest.mark.parametrize("record", INPUTS + COMMANDS, ids=_id)
def test_input_examples_parse(record: dict[str, Any]) -> None:
    parse_input(record)


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("record", ALL, ids=_id)
def test_round_trip(record: dict[str, Any]) -> None:
    decoded = AVRO.decode(AVRO.encode(record))
    assert decoded == record
    # Key order too: the JSON re-encoding is byte for byte the json codec's.
    assert JSON.encode(decoded) == JSON.encode(record)


@pytest.mark.parametrize("record", INPUTS + COMMANDS, ids=_id)
def test_input_means_what_the_json_input_means(record: dict[str, Any]) -> None:
    as_json = parse_input(JSON.decode(JSON.encode(record)))
    assert InputDecoder().decode(AVRO.encode(record)) == as_json


def test_decode_does_not_share_state_between_calls() -> None:
    data = AVRO.encode(STORED[0])
    first = AVRO.decode(data)
    first["payload"]["text"] = "changed"
    assert AVRO.decode(data) == STORED[0]


def test_encode_leaves_the_record_alone() -> None:
    record = {**INPUTS[0], "concurrency": "queue", "max_queue_depth": 3}
    before = copy.deepcopy(record)
    AVRO.encode(record)
    assert record == before


@pytest.mark.parametrize(
    ("given", "decoded"),
    [
        # Absent optional seed fields come back as null, as in the seed's JSON.
        ({"interaction_id": None}, {}),
        # A bare policy name is the PolicySpec record; null options are left out.
        ({"concurrency": "steer"}, {"concurrency": {"name": "steer"}}),
        (
            {"concurrency": {"name": "queue", "max_parallel": None}},
            {"concurrency": {"name": "queue"}},
        ),
        # The flat form of the override.
        (
            {"concurrency": "queue", "max_queue_depth": 3},
            {"concurrency": {"name": "queue", "max_queue_depth": 3}},
        ),
        # Null extensions are the same as absent ones.
        ({"event_id": None, "seq": None, "expected_interaction_id": None}, {}),
    ],
)
def test_input_forms(given: dict[str, Any], decoded: dict[str, Any]) -> None:
    record = {"type": "user_input", "thread_id": THREAD, "payload": 1, "timestamp": TS} | given
    expected = {
        "type": "user_input",
        "thread_id": THREAD,
        "interaction_id": None,
        "payload": 1,
        "task_id": None,
        "step_id": None,
        "timestamp": TS,
    } | decoded
    assert AVRO.decode(AVRO.encode(record)) == expected
    assert parse_input(AVRO.decode(AVRO.encode(record))) == parse_input(record)


def test_command_with_a_bare_policy_name() -> None:
    record = {**COMMANDS[4], "policy": "enqueue"}
    decoded = AVRO.decode(AVRO.encode(record))
    assert decoded["policy"] == {"name": "enqueue"}
    assert parse_input(decoded) == parse_input(record)


def test_null_payload_is_the_json_text_null() -> None:
    data = AVRO.encode(STORED[4])
    assert b"\x08null" in data  # a 4-byte string: zig-zag length 8, then the text
    assert AVRO.decode(data)["payload"] is None


# --- framing and schema ids -----------------------------------------------------------------

# Pinned: a change here means a schema (or fastavro's canonical form) changed. Old records keep
# their old id, so make the change a new version (schemas/avro/README.md), then update this.
PINNED_IDS = {
    "artifact": 1334260865,
    "assistant_output": 1351610446,
    "command": 1874512461,
    "external_event": 1670403672,
    "interaction": 1931004355,
    "outcome": 1236398482,
    "system_trace": 1891184800,
    "user_input": 195289991,
}


@pytest.mark.parametrize("record", ALL, ids=_id)
def test_framing(record: dict[str, Any]) -> None:
    data = AVRO.encode(record)
    assert data[0] == 0x00
    assert int.from_bytes(data[1:5], "big") == RESOLVER.id_for(record["type"])
    # The body is plain schemaless Avro, readable by any Avro library given the schema.
    body = BytesIO(data[5:])
    fastavro.schemaless_reader(body, RESOLVER.latest(record["type"]), None)
    assert body.tell() == len(data) - 5


def test_schema_ids_are_deterministic_and_distinct() -> None:
    ids = {name: RESOLVER.id_for(name) for name in RESOLVER.names()}
    assert ids == PINNED_IDS
    assert {name: LocalSchemaResolver().id_for(name) for name in ids} == ids
    assert len(set(ids.values())) == len(ids)
    for name, versions in load_schemas().items():
        canonical = to_parsing_canonical_form(versions[-1]).encode()
        expected = int.from_bytes(hashlib.sha256(canonical).digest()[:4], "big") & 0x7FFFFFFF
        assert schema_id(versions[-1]) == expected == ids[name]
        assert 0 < ids[name] < 2**31


def test_docs_do_not_change_the_id() -> None:
    schema = copy.deepcopy(load_schemas()["outcome"][-1])
    schema["doc"] = "reworded"
    schema["fields"][1]["doc"] = "reworded too"
    assert schema_id(schema) == PINNED_IDS["outcome"]


# --- the schemas match records.py and the evolution rule ------------------------------------


def _field_names(name: str) -> list[str]:
    return [f["name"] for f in RESOLVER.latest(name)["fields"]]


def test_schema_fields_follow_records_py() -> None:
    for name, seed in EVENT_FIELDS.items():
        assert _field_names(name) == ["type", *seed, *EXTENSIONS]
    assert _field_names("command") == list(Command.model_fields)
    assert _field_names("outcome") == list(Outcome.model_fields)
    assert _field_names("interaction") == list(InteractionRecord.model_fields)


def test_every_schema_tags_its_type_and_defaults_its_optional_fields() -> None:
    for name, versions in load_schemas().items():
        schema = versions[-1]
        assert schema["namespace"] == "orchestral.v1"
        assert schema["fields"][0]["type"]["symbols"] == [name]
        for field in schema["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null"
                assert "default" in field and field["default"] is None, field["name"]


# --- malformed input ------------------------------------------------------------------------


def _frame(name: str, body: bytes) -> bytes:
    return b"\x00" + RESOLVER.id_for(name).to_bytes(4, "big") + body


def _body(name: str, datum: dict[str, Any]) -> bytes:
    out = BytesIO()
    fastavro.schemaless_writer(out, RESOLVER.latest(name), datum)
    return out.getvalue()


def _raw_user_input(**fields: Any) -> dict[str, Any]:
    return {"type": "user_input", "thread_id": THREAD, "payload": "{}", "timestamp": TS} | fields


@pytest.mark.parametrize("data", ENCODED, ids=[_id(r) for r in ALL])
def test_every_truncation_is_a_decode_error(data: bytes) -> None:
    for end in range(len(data)):
        with pytest.raises(DecodeError):
            AVRO.decode(data[:end])


def _with_interaction_union_index(zigzag: int) -> bytes:
    # Body: type enum (1 byte), thread_id (length byte + text), then interaction_id's union index.
    body = bytearray(_body("user_input", _raw_user_input()))
    position = 2 + len(THREAD)
    assert body[position] == 0  # the null branch
    body[position] = zigzag
    return _frame("user_input", bytes(body))


MALFORMED = {
    "empty": b"",
    "header only": ENCODED[0][:5],
    "short header": b"\x00\x01\x02",
    "wrong magic": b"\x01" + ENCODED[0][1:],
    "json": b'{"type":"user_input"}',
    "unknown id": b"\x00\x00\x00\x00\x01" + ENCODED[0][5:],
    "trailing bytes": ENCODED[0] + b"\x00",
    "another schema's body": _frame("user_input", ENCODED[-1][5:]),
    "type enum index out of range": _frame("user_input", b"\x02" + ENCODED[0][6:]),
    "union index out of range": _with_interaction_union_index(0x0A),  # 5
    "negative union index": _with_interaction_union_index(0x01),  # -1
    "negative string length": _frame("user_input", b"\x00\x03abc"),
    "huge string length": _frame("user_input", b"\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"),
    "non-utf-8 string": _frame(
        "user_input",
        _body("user_input", _raw_user_input(thread_id="t\u00e9")).replace(b"\xc3\xa9", b"\xff\xfe"),
    ),
    "encoded surrogate": _frame(
        "user_input",
        _body("user_input", _raw_user_input(thread_id="t\u00e9\u00e9")).replace(
            b"\xc3\xa9\xc3\xa9", b"\xed\xa0\x80\x41"
        ),
    ),
    "payload not json": _frame("user_input", _body("user_input", _raw_user_input(payload="{x"))),
    "payload NaN": _frame("user_input", _body("user_input", _raw_user_input(payload="NaN"))),
    "payload empty": _frame("user_input", _body("user_input", _raw_user_input(payload=""))),
    "payload lone surrogate": _frame(
        "user_input", _body("user_input", _raw_user_input(payload='"\\ud800"'))
    ),
    "payload too deep": _frame(
        "user_input", _body("user_input", _raw_user_input(payload="[" * 100_000))
    ),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_values_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        AVRO.decode(data)
    assert "\n" not in caught.value.reason


def test_a_bad_payload_still_names_the_thread() -> None:
    with pytest.raises(DecodeError) as caught:
        AVRO.decode(MALFORMED["payload not json"])
    assert caught.value.thread_id == THREAD
    assert "payload" in caught.value.reason


@pytest.mark.parametrize(
    ("field", "avro_type", "value"),
    [("timestamp", "long", 1_774_692_942), ("payload", "long", 42), ("thread_id", "boolean", True)],
)
def test_wrong_field_type_in_the_body(field: str, avro_type: str, value: Any) -> None:
    # A producer that wrote a field with another type, under the real schema's id.
    schema = copy.deepcopy(load_schemas()["user_input"][-1])
    for f in schema["fields"]:
        if f["name"] == field:
            f["type"] = avro_type
    out = BytesIO()
    fastavro.schemaless_writer(
        out, fastavro.parse_schema(schema), _raw_user_input(**{field: value})
    )
    with pytest.raises(DecodeError):
        AVRO.decode(_frame("user_input", out.getvalue()))


def _decode_or_decode_error(data: bytes) -> None:
    """Any bytes either raise DecodeError or decode to a record the json codec can write."""
    with contextlib.suppress(DecodeError):
        record = AVRO.decode(data)
        assert isinstance(record, dict)
        JSON.encode(record)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=500)
@given(st.sampled_from(sorted(PINNED_IDS)), st.binary(max_size=200))
def test_arbitrary_bodies_decode_or_raise_decode_error(name: str, body: bytes) -> None:
    _decode_or_decode_error(_frame(name, body))


@settings(max_examples=1000)
@given(st.sampled_from(ENCODED), byte_edits(min_size=1), st.none() | st.integers(0, 600))
def test_mutated_encodings_decode_or_raise_decode_error(
    data: bytes, edits: list[tuple[str, int, bytes]], cut: int | None
) -> None:
    _decode_or_decode_error(mutate(data, edits, cut))


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_OPTIONAL_TEXT = st.none() | st.text()


@settings(max_examples=300)
@given(
    st.sampled_from(["user_input", "assistant_output", "external_event", "system_trace"]),
    st.text(min_size=1),
    _OPTIONAL_TEXT,
    _JSON_VALUES,
    _OPTIONAL_TEXT,
    st.integers(1, 2**63 - 1),
    st.text(),
)
def test_stored_events_round_trip(
    kind: str,
    thread_id: str,
    interaction_id: str | None,
    payload: Any,
    task_id: str | None,
    seq: int,
    event_id: str,
) -> None:
    values = {
        "type": kind,
        "thread_id": thread_id,
        "interaction_id": interaction_id,
        "kind": "k",
        "level": "info",
        "payload": payload,
        "task_id": task_id,
        "step_id": None,
        "timestamp": TS,
    }
    record = {name: values[name] for name in ("type", *EVENT_FIELDS[kind])}
    record |= {"seq": seq, "event_id": event_id}
    decoded = AVRO.decode(AVRO.encode(record))
    assert JSON.encode(decoded) == JSON.encode(record)


def test_the_cores_rollback_marks_round_trip() -> None:
    inputs = [
        {"type": "user_input", "thread_id": THREAD, "payload": n, "timestamp": TS, "concurrency": c}
        for n, c in enumerate(("interrupt", "rollback"))
    ]
    stored = [r for topic, r in replay(inputs) if topic == STORE]
    [mark] = [r for r in stored if r["type"] == "system_trace"]
    decoded = AVRO.decode(AVRO.encode(mark))
    assert decoded == mark
    assert JSON.encode(decoded) == JSON.encode(mark)


# --- encoding errors are programming errors: ValueError -------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        {"type": "nonsense", "thread_id": THREAD},
        {"thread_id": THREAD},
        {"type": 7},
        {k: v for k, v in STORED[0].items() if k != "thread_id"},
        {k: v for k, v in STORED[0].items() if k != "payload"},
        STORED[0] | {"seq": "1"},
        STORED[0] | {"seq": 1.5},
        STORED[0] | {"seq": True},
        STORED[0] | {"thread_id": 12},
        STORED[0] | {"unknown_field": 1},
        STORED[0] | {"payload": object()},
        STORED[0] | {"payload": float("nan")},
        STORED[0] | {"payload": "\ud800"},
        COMMANDS[4] | {"max_interactions_per_thread": 2**31},
        COMMANDS[4] | {"policy": {"name": "queue", "max_queue_depth": "3"}},
        OUTCOMES[0] | {"queue_position": 2**31},
    ],
)
def test_records_that_do_not_fit_raise_value_error(record: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        AVRO.encode(record)
    assert not isinstance(caught.value, DecodeError)


# --- evolution ------------------------------------------------------------------------------


def _old_user_input() -> dict[str, Any]:
    """The user_input schema as a first version would have had it: no contract extensions."""
    schema = copy.deepcopy(load_schemas()["user_input"][-1])
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in EXTENSIONS]
    return schema


def test_records_of_an_older_schema_decode_with_the_newest() -> None:
    old = _old_user_input()
    versions = load_schemas()
    resolver = LocalSchemaResolver(versions | {"user_input": [old, *versions["user_input"]]})
    codec = AvroCodec(resolver)
    seed_shaped = {name: STORED[0][name] for name in ("type", *EVENT_FIELDS["user_input"])}
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(old), seed_shaped | {"payload": "[1]"})
    data = b"\x00" + schema_id(old).to_bytes(4, "big") + out.getvalue()

    assert schema_id(old) != resolver.id_for("user_input")
    assert codec.decode(data) == seed_shaped | {"payload": [1]}
    # New records are still written with the newest schema, and both kinds of records decode.
    assert codec.encode(STORED[0])[1:5] == resolver.id_for("user_input").to_bytes(4, "big")
    assert codec.decode(codec.encode(STORED[0])) == STORED[0]
    # The shipped resolver alone has never heard of the old id.
    with pytest.raises(DecodeError, match="unknown Avro schema id"):
        AVRO.decode(data)


def test_retired_versions_are_loaded_from_versioned_files(tmp_path: Path) -> None:
    for name, versions in load_schemas().items():
        (tmp_path / f"{name}.avsc").write_text(json.dumps(versions[-1]))
    (tmp_path / "user_input.v1.avsc").write_text(json.dumps(_old_user_input()))
    (tmp_path / "notes.txt").write_text("not a schema")

    loaded = load_schemas(tmp_path)
    assert loaded["user_input"] == [_old_user_input(), load_schemas()["user_input"][-1]]
    resolver = LocalSchemaResolver(loaded)
    assert resolver.id_for("user_input") == PINNED_IDS["user_input"]
    assert resolver.name_for(schema_id(_old_user_input())) == "user_input"
