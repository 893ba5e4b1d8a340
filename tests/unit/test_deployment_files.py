"""docker-compose.yml and the Dockerfile stay true to the code (no Docker engine runs here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings
from processors import broker

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_runs_the_brokers_kafka_version() -> None:
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{broker.KAFKA_VERSION}"


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_worker_environment_names_real_settings() -> None:
    env = compose()["services"]["worker"]["environment"]
    fields = {f"ORCHESTRAL_{name.upper()}" for name in Settings.model_fields} | {
        "KAFKA_BOOTSTRAP_SERVERS"
    }
    assert set(env) <= fields
    Settings.model_validate(
        {
            k.removeprefix("ORCHESTRAL_").lower(): v
            for k, v in env.items()
            if k.startswith("ORCHESTRAL_")
        }
    )
    kafka_env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] in kafka_env["KAFKA_ADVERTISED_LISTENERS"]


def test_dockerfile_runs_the_worker_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["orchestral-stream", "worker"]' in dockerfile
    for package in ("processors", "schemas", "config"):
        assert f"COPY {package} {package}" in dockerfile


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the docker compose client is not installed here; the structural tests above still run",
)
def test_docker_compose_config_accepts_the_file() -> None:
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, check=True)
