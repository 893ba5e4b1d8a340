"""SASL (SCRAM-SHA-512) and TLS, end to end, against a secured broker started once for the module.

The test makes its own certificate authority (openssl), a broker certificate for 127.0.0.1 and
localhost, and a client certificate; the broker serves SASL_PLAINTEXT, SASL_SSL and SSL (the last
requiring a client certificate). Right credentials: the worker processes an event sent with the
CLI and the CLI reads its outcome and history back. Wrong ones: the worker and the CLI exit
non-zero within 30 s with a clear message. No secret appears in any output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools import broker
from devtools.deployment import ROOT, Deployment, free_ports

pytestmark = pytest.mark.integration

USER = "orchestral"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # distinctive, so a leak anywhere is found by a search
WRONG_PASSWORD = f"wrong-{uuid.uuid4().hex}"
EXIT_REFUSED = 3  # processors.exit_codes.REFUSED


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=orchestral test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip


def _issue(d: Path, name: str, usage: str, san: str) -> None:
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", f"/CN={name}",
        cwd=d,
    )  # fmt: skip
    (d / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make the test CA")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _issue(d, "broker", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _issue(d, "client", "clientAuth", "DNS:client")
    return Pki(
        d / "ca.pem", d / "broker.pem", d / "broker.key", d / "client.pem", d / "client.key",
        d / "other-ca.pem",
    )  # fmt: skip


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerInfo]:
    # The first two consecutive: the controller listens on port + 1.
    port, _, sasl_port, sasl_ssl_port, ssl_port = free_ports(5, pair=True)
    data = tmp_path_factory.mktemp("secured-broker")
    security = broker.Security(
        sasl_plaintext_port=sasl_port,
        sasl_ssl_port=sasl_ssl_port,
        ssl_port=ssl_port,
        scram_users={USER: PASSWORD},
        tls_cert=pki.broker_cert,
        tls_key=pki.broker_key,
        client_ca=pki.ca,
        ssl_client_auth="required",
    )
    info = broker.start(port, data_dir=data, timeout=180, security=security)
    try:
        yield info
    finally:
        broker.stop(port, data_dir=data)
        assert_no_secret(info.log_path.read_text(errors="replace"))


def security_env(protocol: str, pki: Pki, password: str = PASSWORD) -> dict[str, str]:
    env = {"ORCHESTRAL_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL_"):
        env |= {
            "ORCHESTRAL_SASL_MECHANISM": "SCRAM-SHA-512",
            "ORCHESTRAL_SASL_USERNAME": USER,
            "ORCHESTRAL_SASL_PASSWORD": password,
        }
    if protocol.endswith("SSL"):
        env["ORCHESTRAL_SSL_CAFILE"] = str(pki.ca)
    if protocol == "SSL":  # the SSL listener requires a client certificate
        env |= {
            "ORCHESTRAL_SSL_CERTFILE": str(pki.client_cert),
            "ORCHESTRAL_SSL_KEYFILE": str(pki.client_key),
        }
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processors.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert WRONG_PASSWORD not in text


@pytest.mark.parametrize(
    ("protocol", "guarantee"),
    [("SASL_SSL", "exactly_once"), ("SASL_PLAINTEXT", "at_least_once"), ("SSL", "at_least_once")],
)
def test_right_credentials_worker_processes_an_event_sent_with_the_cli(
    protocol: str, guarantee: str, secured: broker.BrokerInfo, pki: Pki, tmp_path: Path
) -> None:
    name = f"sec-{protocol.lower().replace('_', '-')}"
    env = {**security_env(protocol, pki), "ORCHESTRAL_PROCESSING_GUARANTEE": guarantee}
    d = Deployment(secured.address(protocol), name, tmp_path, extra_env=env)
    d.create_topics()
    worker = d.worker().start()
    d.extra_env["ORCHESTRAL_API_URL"] = f"http://127.0.0.1:{worker.env['ORCHESTRAL_WEB_PORT']}"
    try:
        sent = cli(d.env, "send", "--thread", "t1", "--text", "hello", "--wait", timeout=90)
        assert sent.returncode == 0, sent.stderr
        lines = [json.loads(line) for line in sent.stdout.splitlines()]
        outcome = lines[-1]
        assert outcome["type"] == "outcome", sent.stdout
        assert outcome["status"] == "started"
        assert outcome["source_event_id"] == lines[0]["sent"]
        history = cli(d.env, "history", "t1")
        assert history.returncode == 0, history.stderr
        events = [json.loads(line) for line in history.stdout.splitlines()]
        assert [e["event_id"] for e in events] == [lines[0]["sent"]]
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
    if protocol.startswith("SASL_"):  # faust's own clients authenticated, not only our check
        assert f"Authenticated as {USER} via SCRAM-SHA-512" in worker.log()
    assert_no_secret(worker.log(), sent.stdout, sent.stderr, history.stdout, history.stderr)


def _refused_worker(
    env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    run = cli(
        {
            **env,
            "ORCHESTRAL_APP_ID": f"refused-{uuid.uuid4().hex[:8]}",
            "ORCHESTRAL_DATA_DIR": str(tmp_path / "data"),
            "ORCHESTRAL_CONNECT_TIMEOUT": "30",
        },
        "worker",
        timeout=45,
    )
    return run, time.monotonic() - began


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_wrong_password_worker_exits_nonzero_within_30s_with_a_clear_message(
    protocol: str, secured: broker.BrokerInfo, pki: Pki, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": secured.address(protocol),
        **security_env(protocol, pki, password=WRONG_PASSWORD),
    }
    run, took = _refused_worker(env, tmp_path)
    assert run.returncode == EXIT_REFUSED, run.stdout + run.stderr
    assert took < 30
    assert "authentication failed" in run.stderr
    assert f"as user '{USER}'" in run.stderr
    assert "ORCHESTRAL_SASL_PASSWORD" in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_secret(run.stdout, run.stderr)


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("untrusted broker certificate", {"ORCHESTRAL_SSL_CAFILE": "other"}),
        ("no client certificate", {"ORCHESTRAL_SSL_CERTFILE": "", "ORCHESTRAL_SSL_KEYFILE": ""}),
    ],
)
def test_tls_refusal_worker_exits_nonzero_within_30s_with_a_clear_message(
    case: str, change: dict[str, str], secured: broker.BrokerInfo, pki: Pki, tmp_path: Path
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": secured.address("SSL"), **security_env("SSL", pki)}
    env |= {k: str(pki.other_ca) if v == "other" else v for k, v in change.items()}
    run, took = _refused_worker(env, tmp_path)
    assert run.returncode == EXIT_REFUSED, run.stdout + run.stderr
    assert took < 30
    assert "TLS handshake" in run.stderr, case
    assert "ORCHESTRAL_SSL_CAFILE" in run.stderr
    assert "Traceback" not in run.stderr


def test_wrong_password_cli_exits_nonzero_with_a_clear_message(
    secured: broker.BrokerInfo, pki: Pki
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": secured.address("SASL_SSL"),
        **security_env("SASL_SSL", pki, password=WRONG_PASSWORD),
    }
    began = time.monotonic()
    run = cli(env, "send", "--thread", "t1", "--text", "x", timeout=45)
    assert run.returncode == EXIT_REFUSED, run.stdout + run.stderr
    assert time.monotonic() - began < 30
    assert "orchestral-stream send: authentication failed" in run.stderr
    assert "Traceback" not in run.stderr
    assert_no_secret(run.stdout, run.stderr)
