"""Security settings: validation names the variable and never echoes a secret; one mapping to
aiokafka's and faust's arguments; the secured broker's server.properties."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from config.settings import Settings, load_settings
from devtools import broker
from processors.kafka.connection import (
    _security_error,
    kafka_kwargs,
    ssl_context,
    unreachable,
)
from processors.worker.app import faust_credentials
from schemas.errors import AuthenticationFailed, ConfigurationError, TLSHandshakeFailed

SECRET = "s3cret-Pa55word"
SASL = {"security_protocol": "SASL_SSL", "sasl_username": "alice", "sasl_password": SECRET}


def error_of(**overrides: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**overrides)
    return str(info.value)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ORCHESTRAL_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_are_plaintext_without_credentials() -> None:
    s = load_settings()
    assert s.security_protocol == "PLAINTEXT"
    assert s.sasl_mechanism == "SCRAM-SHA-512"
    assert s.sasl_username is None and s.sasl_password is None and s.ssl_cafile is None
    assert kafka_kwargs(s) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("ORCHESTRAL_SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("ORCHESTRAL_SASL_MECHANISM", "scram_sha_256")
    monkeypatch.setenv("ORCHESTRAL_SASL_USERNAME", "alice")
    monkeypatch.setenv("ORCHESTRAL_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("ORCHESTRAL_SSL_CAFILE", str(ca))
    s = load_settings()
    assert (s.security_protocol, s.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert s.sasl_password is not None and s.sasl_password.get_secret_value() == SECRET
    assert s.ssl_cafile == ca


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
def test_mechanisms(mechanism: str) -> None:
    assert load_settings(**SASL, sasl_mechanism=mechanism.lower()).sasl_mechanism == mechanism


def test_the_password_is_never_in_repr_str_or_dump() -> None:
    s = load_settings(**SASL)
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in str(s.model_dump())


def test_unknown_protocol_names_the_variable() -> None:
    message = error_of(security_protocol="SASL_TLS")
    assert "ORCHESTRAL_SECURITY_PROTOCOL" in message and "SASL_SSL" in message


def test_unknown_mechanism_names_the_variable() -> None:
    assert "ORCHESTRAL_SASL_MECHANISM" in error_of(**SASL, sasl_mechanism="GSSAPI")


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_needs_username_and_password(protocol: str) -> None:
    message = error_of(security_protocol=protocol)
    assert f"ORCHESTRAL_SASL_USERNAME is required with {protocol}" in message
    assert f"ORCHESTRAL_SASL_PASSWORD is required with {protocol}" in message
    assert "ORCHESTRAL_SASL_PASSWORD is required" in error_of(
        security_protocol=protocol, sasl_username="alice", sasl_password=""
    )


def test_credentials_without_sasl_are_refused_without_echoing_them() -> None:
    message = error_of(sasl_username="alice", sasl_password=SECRET)
    assert "ORCHESTRAL_SASL_PASSWORD is set but ORCHESTRAL_SECURITY_PROTOCOL=PLAINTEXT" in message
    assert SECRET not in message


def test_an_invalid_password_value_is_not_echoed() -> None:
    message = error_of(**{**SASL, "sasl_password": ["not", "a", SECRET]})
    assert "ORCHESTRAL_SASL_PASSWORD" in message and "value not shown" in message
    assert SECRET not in message


def test_a_cross_field_error_never_shows_the_inputs() -> None:
    message = error_of(sasl_password=SECRET, ssl_key_password=SECRET + "2")
    assert SECRET not in message


def test_tls_files_must_exist(tmp_path: Path) -> None:
    message = error_of(security_protocol="SSL", ssl_cafile=str(tmp_path / "missing.pem"))
    assert "ORCHESTRAL_SSL_CAFILE" in message and "missing.pem" in message


def test_tls_files_without_tls_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    message = error_of(security_protocol="SASL_PLAINTEXT", sasl_username="a", sasl_password="b",
                       ssl_cafile=str(ca))  # fmt: skip
    assert "ORCHESTRAL_SSL_CAFILE is set but ORCHESTRAL_SECURITY_PROTOCOL=SASL_PLAINTEXT" in message


def test_a_key_needs_its_certificate(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    message = error_of(security_protocol="SSL", ssl_keyfile=str(key))
    assert "ORCHESTRAL_SSL_KEYFILE needs ORCHESTRAL_SSL_CERTFILE" in message


def test_blank_values_mean_unset() -> None:
    s = load_settings(security_protocol="SSL", ssl_cafile="", ssl_certfile=" ", sasl_password="")
    assert s.ssl_cafile is None and s.ssl_certfile is None and s.sasl_password is None


def test_kafka_kwargs_for_sasl_ssl() -> None:
    s = load_settings(**SASL, bootstrap_servers="b1:9093,b2:9093")
    kwargs = kafka_kwargs(s)
    assert kwargs["bootstrap_servers"] == "b1:9093,b2:9093"
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("alice", SECRET)
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_kafka_kwargs_for_sasl_plaintext_have_no_tls() -> None:
    kwargs = kafka_kwargs(load_settings(**{**SASL, "security_protocol": "SASL_PLAINTEXT"}))
    assert "ssl_context" not in kwargs and kwargs["security_protocol"] == "SASL_PLAINTEXT"


def test_hostname_check_can_be_turned_off() -> None:
    context = ssl_context(load_settings(security_protocol="SSL", ssl_check_hostname=False))
    assert context is not None and not context.check_hostname


def test_faust_credentials_map_to_the_same_aiokafka_arguments() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    for overrides in (SASL, {**SASL, "security_protocol": "SASL_PLAINTEXT"}):
        s = load_settings(**overrides)
        faust_kwargs = credentials_to_aiokafka_auth(faust_credentials(s))
        ours = kafka_kwargs(s)
        for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
            assert faust_kwargs[key] == ours[key], key
        assert faust_kwargs["sasl_plain_password"] == SECRET
        assert (faust_kwargs["ssl_context"] is None) == ("ssl_context" not in ours)
        assert SECRET not in repr(faust_credentials(s))
    tls = credentials_to_aiokafka_auth(faust_credentials(load_settings(security_protocol="SSL")))
    assert tls["security_protocol"] == "SSL" and isinstance(tls["ssl_context"], ssl.SSLContext)
    assert faust_credentials(load_settings()) is None


def test_faust_settings_carry_the_credentials() -> None:
    from processors.worker.app import faust_settings

    creds = faust_settings(load_settings(**SASL))["broker_credentials"]
    assert creds.mechanism.value == "SCRAM-SHA-512" and creds.protocol.value == "SASL_SSL"


def test_an_unloadable_client_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("not a certificate")
    s = load_settings(security_protocol="SSL", ssl_certfile=str(cert), ssl_key_password=SECRET)
    with pytest.raises(ConfigurationError) as info:
        ssl_context(s)
    assert "ORCHESTRAL_SSL_CERTFILE" in str(info.value) and SECRET not in str(info.value)


def test_an_encrypted_client_key_needs_its_password(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=client",
         "-keyout", "key.pem", "-out", "cert.pem", "-passout", f"pass:{SECRET}"],
        cwd=tmp_path, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    files = {
        "security_protocol": "SSL",
        "ssl_certfile": str(tmp_path / "cert.pem"),
        "ssl_keyfile": str(tmp_path / "key.pem"),
    }
    assert ssl_context(load_settings(**files, ssl_key_password=SECRET)) is not None
    for wrong in ({"ssl_key_password": "nope"}, {}):  # without one: an error, never a prompt
        with pytest.raises(ConfigurationError) as info:
            ssl_context(load_settings(**files, **wrong))
        assert "ORCHESTRAL_SSL_KEY_PASSWORD" in str(info.value) and SECRET not in str(info.value)


def test_refusals_are_classified_and_scrubbed() -> None:
    from aiokafka import errors

    s = load_settings(**SASL)
    # Even if a library echoed the password, our message would not.
    auth = _security_error(s, "b1:9093", errors.SaslAuthenticationFailed(f"bad {SECRET}"))
    assert isinstance(auth, AuthenticationFailed)
    assert "as user 'alice'" in str(auth) and SECRET not in str(auth)
    wrapped = errors.KafkaConnectionError("Connection at b1:9093 closed")
    wrapped.__cause__ = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert")
    tls = _security_error(s, "b1:9093", wrapped)
    assert isinstance(tls, TLSHandshakeFailed) and "ORCHESTRAL_SSL_CAFILE" in str(tls)
    assert _security_error(s, "b1:9093", ConnectionRefusedError()) is None
    gone = unreachable(s, ConnectionRefusedError(f"x {SECRET}"))
    assert "ORCHESTRAL_SECURITY_PROTOCOL=SASL_SSL" in str(gone) and SECRET not in str(gone)


def test_broker_properties_for_secured_listeners(tmp_path: Path) -> None:
    security = broker.Security(
        sasl_plaintext_port=9200, sasl_ssl_port=9201, ssl_port=9202,
        scram_users={"alice": "pw"}, client_ca=tmp_path / "ca.pem", ssl_client_auth="required",
    )  # fmt: skip
    props = broker.broker_properties(
        port=9092, controller_port=9093, log_dir=tmp_path, security=security,
        tls_keystore=tmp_path / "ks.pem",
    )  # fmt: skip
    assert props["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9200,"
        "SASL_SSL://127.0.0.1:9201,SSL://127.0.0.1:9202"
    )
    assert props["listeners"].endswith(",CONTROLLER://127.0.0.1:9093")
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert "SCRAM-SHA-512" in props["sasl.enabled.mechanisms"]
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.truststore.type"] == "PEM"
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert "password" not in broker.render_properties(props)  # users live in the metadata
    assert broker._scram_args(security) == [
        "--add-scram", "SCRAM-SHA-512=[name=alice,password=pw]",
        "--add-scram", "SCRAM-SHA-256=[name=alice,password=pw]",
    ]  # fmt: skip


def test_plain_broker_properties_are_unchanged(tmp_path: Path) -> None:
    props = broker.broker_properties(port=9092, controller_port=9093, log_dir=tmp_path)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert not any("ssl" in k or "sasl" in k for k in props)


def test_broker_security_is_checked(tmp_path: Path) -> None:
    with pytest.raises(broker.BrokerError, match="certificate and key"):
        broker.Security(ssl_port=9202).check()
    with pytest.raises(broker.BrokerError, match="SCRAM user"):
        broker.Security(sasl_plaintext_port=9200, scram_users={"a": "p,w"}).check()


def test_settings_model_has_every_documented_security_variable() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for field in Settings.model_fields:
        if field.startswith(("security_", "sasl_", "ssl_")):
            assert f"ORCHESTRAL_{field.upper()}" in readme, field
