"""Settings as people set them: every refusal names the variable to fix."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import bootstrap_addresses, env_name, load_settings
from schemas.errors import ConfigurationError

LEVELS = ("debug", "info", "warning", "error", "critical")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ORCHESTRAL_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    return str(info.value)


def test_an_unknown_log_level_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, "ORCHESTRAL_LOG_LEVEL", "verbose")
    assert message.startswith("invalid settings: ORCHESTRAL_LOG_LEVEL:")
    assert "'verbose'" in message and "'debug'" in message


@given(st.sampled_from(LEVELS), st.sampled_from((str.upper, str.lower, str.title)))
def test_log_levels_are_case_insensitive(level: str, case: object) -> None:
    assert load_settings(log_level=case(level)).log_level == level  # type: ignore[operator]


@given(st.text(max_size=12).filter(lambda t: t.strip().lower() not in LEVELS))
def test_any_other_log_level_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRAL_LOG_LEVEL"):
        load_settings(log_level=text)


def test_an_empty_bootstrap_names_kafka_bootstrap_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, "KAFKA_BOOTSTRAP_SERVERS", "")
    assert "invalid settings: KAFKA_BOOTSTRAP_SERVERS:" in message
    assert "ORCHESTRAL_KAFKA" not in message


def test_a_host_without_port_is_refused_not_completed(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, "KAFKA_BOOTSTRAP_SERVERS", "nonsense")
    assert "KAFKA_BOOTSTRAP_SERVERS: 'nonsense' is not host:port" in message


def test_the_alias_variable_is_named_when_it_is_the_one_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = refusal(monkeypatch, "ORCHESTRAL_BOOTSTRAP_SERVERS", "a:1,b")
    assert "ORCHESTRAL_BOOTSTRAP_SERVERS: 'b' is not host:port" in message


HOSTS = st.sampled_from(("127.0.0.1", "localhost", "kafka-1.example", "[::1]", "10.0.0.7"))
PORTS = st.integers(1, 65535)


@given(st.lists(st.tuples(HOSTS, PORTS), min_size=1, max_size=4), st.sampled_from(("", " ")))
def test_host_port_lists_are_read_back_as_given(servers: list[tuple[str, int]], space: str) -> None:
    text = ",".join(f"{space}{host}:{port}{space}" for host, port in servers)
    settings = load_settings(bootstrap_servers=text)
    assert settings.bootstrap_servers == ",".join(f"{h}:{p}" for h, p in servers)
    assert settings.bootstrap_addresses == [(h.strip("[]"), p) for h, p in servers]


@given(
    st.lists(st.tuples(HOSTS, PORTS), max_size=2),
    st.sampled_from(("nonsense", "host:", ":9092", "host:0", "host:65536", "host:x", "", "h:-1")),
)
def test_one_bad_entry_refuses_the_list(servers: list[tuple[str, int]], bad: str) -> None:
    text = ",".join([*(f"{h}:{p}" for h, p in servers), bad])
    with pytest.raises(ValueError, match="is not host:port"):
        bootstrap_addresses(text)
    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings(bootstrap_servers=text)


def test_env_name_maps_fields_and_aliases() -> None:
    assert env_name("bootstrap_servers") == "KAFKA_BOOTSTRAP_SERVERS"
    assert env_name("KAFKA_BOOTSTRAP_SERVERS") == "KAFKA_BOOTSTRAP_SERVERS"
    assert env_name("ORCHESTRAL_BOOTSTRAP_SERVERS") == "ORCHESTRAL_BOOTSTRAP_SERVERS"
    assert env_name("log_level") == "ORCHESTRAL_LOG_LEVEL"


def test_the_input_size_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().max_input_bytes == 1_000_000
    monkeypatch.setenv("ORCHESTRAL_MAX_INPUT_BYTES", "2000000")
    assert load_settings().max_input_bytes == 2_000_000
    assert "ORCHESTRAL_MAX_INPUT_BYTES" in refusal(monkeypatch, "ORCHESTRAL_MAX_INPUT_BYTES", "0")
