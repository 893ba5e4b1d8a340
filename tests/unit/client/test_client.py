"""`Client.prepare`: a record is refused before producing exactly when the worker would refuse it."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from processors.client.client import Client, RecordRefused, dead_letter_view
from processors.core import Position
from processors.core.runtime import NULL_PAYLOAD_REASON
from processors.worker.handler import RecordHandler
from schemas.json_codec import JsonCodec
from schemas.records import INPUT_TYPES
from tests.support.strategies.records import json_values

SETTINGS = Settings(events_topic="orchestral.events")
NOW = "2026-12-01T10:00:00.000Z"


def mostly(valid: list[Any], wrong: list[Any]) -> st.SearchStrategy[Any]:
    """Valid about four times in five, so that records of both outcomes are drawn."""
    return st.sampled_from(valid * 4 * len(wrong) + wrong)


# Field values the worker accepts, and ones it does not.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload": st.none() | json_values,
    "interaction_id": mostly(["i1", None], [7]),
    "task_id": mostly(["k1", None], [1]),
    "kind": mostly(["webhook"], [None]),
    "level": mostly(["info"], [None]),
    "reference_id": mostly(["r1"], [2]),
    "timestamp": mostly([NOW, "2026-12-01T10:00:00+01:00"], ["yesterday", 0]),
    "event_id": mostly(["e1"], ["", None]),
    "concurrency": mostly(["queue", "steer"], ["nope", {"name": "queue", "max_queue_depth": 0}]),
    "policy": mostly(["reject", {"name": "parallel", "max_parallel": 2}], [{"x": 1}]),
    "max_interactions_per_thread": mostly([3], [0, "3"]),
    "auto_cleanup": mostly([True, False], ["yes"]),
}
COMMAND_NAMES = ["complete", "configure", "add_task", "cancel_all", "wait_event"]
records = st.fixed_dictionaries(
    {
        "type": mostly(list(INPUT_TYPES), ["outcome", "UserInput", 3]),
        "thread_id": mostly(["t1", "thread two"], ["", 5, None]),
        "command": mostly(COMMAND_NAMES, ["stop"]),
    },
    optional=VALUES,
) | st.sampled_from([[], "record", 42, None, [{"type": "user_input"}], {"payload": 1}])


def worker_refusal(record: Any) -> str | None:
    """What the worker says of this record as the client would produce it: the DLQ's `error`
    header or the `invalid` outcome's reason, or None when it accepts it."""
    value = copy.deepcopy(record)
    if isinstance(value, dict):
        value.setdefault("timestamp", NOW)
        value.setdefault("event_id", "e0")
    key = str(value.get("thread_id")).encode() if isinstance(value, dict) else None
    handled = RecordHandler(SETTINGS, JsonCodec()).handle(
        key, JsonCodec().encode(value) if isinstance(value, dict) else json.dumps(value).encode(),
        Position("orchestral.events", 0, 0), lambda _: None,
    )  # fmt: skip
    for out in handled.records:
        if out.topic == SETTINGS.dlq_topic:
            return dict(out.headers or [])["error"].decode()
        outcome = json.loads(out.value or b"{}")
        if outcome.get("status") == "invalid":
            return str(outcome["reason"])
    return None


def client_refusal(record: Any) -> str | None:
    value = copy.deepcopy(record)
    if isinstance(value, dict):
        value.setdefault("timestamp", NOW)
        value.setdefault("event_id", "e0")
    try:
        Client(SETTINGS).prepare(value)
    except RecordRefused as exc:
        return exc.reason
    return None


@given(records)
def test_the_client_refuses_what_the_worker_refuses_with_its_reason(record: Any) -> None:
    assert client_refusal(record) == worker_refusal(record)


def test_missing_thread_id_is_the_workers_reason() -> None:
    assert client_refusal({"type": "user_input", "payload": 1}) == "missing field `thread_id`"


def test_a_json_array_is_refused() -> None:
    assert client_refusal([1, 2]) == "unknown encoding: first byte 0x5b is neither 0x00 nor '{'"


def test_a_null_payload_is_refused_as_the_core_would_answer() -> None:
    refused = client_refusal(
        {"type": "external_event", "thread_id": "t", "kind": "k", "payload": None}
    )
    assert refused == NULL_PAYLOAD_REASON


def test_values_json_cannot_carry_are_refused() -> None:
    reason = client_refusal({"type": "user_input", "thread_id": "t", "payload": float("nan")})
    assert reason is not None and reason.startswith("value is not valid JSON")
    assert client_refusal({"type": "user_input", "thread_id": "t", "payload": {1, 2}})


def test_a_record_over_the_limit_is_refused_naming_the_setting() -> None:
    client = Client(Settings(events_topic="orchestral.events", max_input_bytes=2048))
    client.prepare({"type": "user_input", "thread_id": "t", "payload": "a" * 1500})
    with pytest.raises(RecordRefused, match="over ORCHESTRAL_MAX_INPUT_BYTES=2048"):
        client.prepare({"type": "user_input", "thread_id": "t", "payload": "a" * 2048})


def test_prepare_fills_defaults_keys_by_thread_and_keeps_what_is_given() -> None:
    record = {"type": "user_input", "thread_id": "t é", "payload": {"message": "hi"}}
    prepared = Client(SETTINGS).prepare(record)
    assert prepared.key == "t é".encode()
    assert prepared.record["event_id"] and prepared.record["timestamp"].endswith("Z")
    assert "event_id" not in record  # the caller's dict is left alone
    given_ids = Client(SETTINGS).prepare({**record, "event_id": "e9", "timestamp": NOW}).record
    assert (given_ids["event_id"], given_ids["timestamp"]) == ("e9", NOW)


def test_dead_letter_view_shows_headers_and_keeps_binary_readable() -> None:
    message = SimpleNamespace(
        partition=2,
        offset=7,
        key=b"t1",
        value=b"\x00\xff\x01",
        headers=[("error", b"unknown encoding"), ("source_offset", b"5")],
    )
    view = dead_letter_view(message)
    assert view == {
        "partition": 2,
        "offset": 7,
        "headers": {"error": "unknown encoding", "source_offset": "5"},
        "key": "t1",
        "value_base64": "AP8B",
    }
    assert dead_letter_view(SimpleNamespace(**{**vars(message), "value": b"{"}))["value"] == "{"
