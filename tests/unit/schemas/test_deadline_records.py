"""The deadline vocabulary on the wire: both codecs, the retired schema versions, the settings."""

from __future__ import annotations

import os
from io import BytesIO
from typing import Any

import fastavro
import pytest

from config.settings import load_settings
from schemas.avro_codec import AvroCodec
from schemas.errors import ConfigurationError
from schemas.json_codec import JsonCodec
from schemas.records import InteractionRecord, parse_input
from schemas.resolver import load_schemas, schema_id

AVRO = AvroCodec()
JSON = JsonCodec()
TS = "2026-03-28T10:15:42.123456789Z"
IID = "5b1f0c3e-8d2a-5e47-9c6b-3a7d1e9f2b80"


def _command(name: str, **fields: Any) -> dict[str, Any]:
    return {"type": "command", "command": name, "thread_id": "t1", "timestamp": TS, **fields}


COMMANDS = [
    _command("heartbeat", interaction_id=IID, event_id="hb-1"),
    _command(
        "expire",
        interaction_id=IID,
        reason="idle_timeout",
        deadline="2026-03-28T10:15:40.5Z",
        event_id=f"expire:{IID}:idle_timeout:2026-03-28T10:15:40.500Z",
    ),
    _command("expire", reason="thread_ttl", deadline=TS, interaction_id=None),
    _command("delete_thread", event_id="del-1"),
    _command("configure", run_timeout=90.5, idle_timeout=0, wait_timeout=30, thread_ttl=86400),
    _command("wait_user", interaction_id=IID, timeout=12.25),
    _command("wait_event", interaction_id=IID, kind="payment", timeout=0.001),
]


@pytest.mark.parametrize("codec", [AVRO, JSON], ids=["avro", "json"])
@pytest.mark.parametrize("record", COMMANDS, ids=lambda r: str(r["command"]))
def test_the_new_commands_round_trip(codec: Any, record: dict[str, Any]) -> None:
    decoded = codec.decode(codec.encode(record))
    assert parse_input(decoded) == parse_input(record)


def test_avro_carries_timeouts_as_doubles() -> None:
    decoded = AVRO.decode(AVRO.encode(COMMANDS[4]))
    values = [decoded[k] for k in ("run_timeout", "idle_timeout", "wait_timeout", "thread_ttl")]
    assert values == [90.5, 0.0, 30.0, 86400.0]


def _interaction(**fields: Any) -> dict[str, Any]:
    return {
        "type": "interaction",
        "thread_id": "t1",
        "interaction_id": IID,
        "state": "failed",
        "previous_state": "active",
        "cause_event_id": "expire:x",
        "timestamp": TS,
        "rolled_back": False,
        "reason": None,
        "event": None,
        **fields,
    }


@pytest.mark.parametrize("codec", [AVRO, JSON], ids=["avro", "json"])
@pytest.mark.parametrize("reason", [None, "run_timeout", "wait_timeout"])
def test_the_interaction_records_reason_round_trips(codec: Any, reason: str | None) -> None:
    record = _interaction(reason=reason)
    InteractionRecord.model_validate(record)
    assert codec.decode(codec.encode(record)) == record


def _encoded_with(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """`record` as a writer of that (retired) schema version framed it."""
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return b"\x00" + schema_id(schema).to_bytes(4, "big") + out.getvalue()


def test_records_written_with_retired_schemas_read_with_the_newest() -> None:
    versions = load_schemas()
    assert len(versions["interaction"]) == 3 and len(versions["command"]) == 2
    v1 = {k: v for k, v in _interaction().items() if k not in ("reason", "event")}
    assert AVRO.decode(_encoded_with(versions["interaction"][0], v1)) == _interaction()
    v2 = {k: v for k, v in _interaction(reason="run_timeout").items() if k != "event"}
    data = _encoded_with(versions["interaction"][1], v2)
    assert AVRO.decode(data) == _interaction(reason="run_timeout")
    old_command = {
        "type": "command",
        "command": "complete",
        "thread_id": "t1",
        "interaction_id": IID,
        "event_id": None,
        "timestamp": TS,
        "kind": None,
        "task_id": None,
        "policy": None,
        "max_interactions_per_thread": None,
        "auto_cleanup": None,
    }
    decoded = AVRO.decode(_encoded_with(versions["command"][0], old_command))
    command = parse_input(decoded)
    assert (command.command, command.interaction_id, command.reason) == (  # type: ignore[union-attr]
        "complete",
        IID,
        None,
    )


# --- settings ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ORCHESTRAL_"):
            monkeypatch.delenv(name)


def test_deadline_settings_default_as_the_contract() -> None:
    settings = load_settings()
    assert (
        settings.run_timeout,
        settings.idle_timeout,
        settings.wait_timeout,
        settings.thread_ttl,
        settings.deadline_interval,
    ) == (3600.0, 0.0, 0.0, 0.0, 1.0)


def test_deadline_settings_from_the_environment_reach_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in [
        ("ORCHESTRAL_RUN_TIMEOUT", "120"),
        ("ORCHESTRAL_IDLE_TIMEOUT", "15.5"),
        ("ORCHESTRAL_WAIT_TIMEOUT", "600"),
        ("ORCHESTRAL_THREAD_TTL", "86400"),
        ("ORCHESTRAL_DEADLINE_INTERVAL", "0.25"),
    ]:
        monkeypatch.setenv(name, value)
    settings = load_settings()
    limits = settings.limits()
    assert (limits.run_timeout, limits.idle_timeout, limits.wait_timeout, limits.thread_ttl) == (
        120.0,
        15.5,
        600.0,
        86400.0,
    )
    assert settings.deadline_interval == 0.25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHESTRAL_RUN_TIMEOUT", "-1"),
        ("ORCHESTRAL_IDLE_TIMEOUT", "nan"),
        ("ORCHESTRAL_WAIT_TIMEOUT", "soon"),
        ("ORCHESTRAL_THREAD_TTL", "inf"),
        ("ORCHESTRAL_DEADLINE_INTERVAL", "0"),
    ],
)
def test_bad_deadline_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert name in str(info.value)
