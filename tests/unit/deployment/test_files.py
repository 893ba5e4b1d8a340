"""docker-compose.yml and the Dockerfile stay true to the code (no Docker engine runs here).

The structure is checked by reading the files; `docker compose config` (or the standalone
`docker-compose`) validates the compose file where a client is installed: it needs no engine.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from config.settings import Settings
from devtools import broker

ROOT = Path(__file__).resolve().parents[3]


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


def test_kafka_keeps_its_data_on_the_volume() -> None:
    kafka = compose()["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    mounts = {
        PurePosixPath(target): source
        for source, target in (str(v).split(":")[:2] for v in kafka["volumes"])
    }
    for log_dir in map(PurePosixPath, log_dirs):
        volume = next((s for t, s in mounts.items() if log_dir.is_relative_to(t)), None)
        assert volume in compose()["volumes"], (log_dir, mounts)  # a named volume, not /tmp


def test_worker_starts_after_kafka_is_healthy_and_has_a_healthcheck() -> None:
    worker = compose()["services"]["worker"]
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in compose()["services"]["kafka"]
    check = worker["healthcheck"]
    assert check["test"][0] == "CMD"
    assert "/metrics" in " ".join(check["test"])


class _MetricsPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/metrics" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def metrics_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _MetricsPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    """The worker's healthcheck command, run here as the container would (exec form)."""
    test = compose()["services"]["worker"]["healthcheck"]["test"]
    assert test[1] == "python"
    env = {**os.environ, "ORCHESTRAL_WEB_PORT": str(port)}
    return subprocess.run([sys.executable, *test[2:]], env=env, capture_output=True).returncode


def test_worker_healthcheck_passes_when_metrics_answer(
    metrics_server: http.server.HTTPServer,
) -> None:
    port = metrics_server.server_address[1]
    assert isinstance(port, int)
    assert run_healthcheck(port) == 0
    metrics_server.shutdown()
    metrics_server.server_close()
    assert run_healthcheck(port) != 0


def test_dockerfile_installs_dependencies_before_copying_the_sources() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]

    def first(predicate: Any) -> int:
        return next(i for i, line in enumerate(lines) if predicate(line))

    lock = first(lambda line: line.startswith("COPY requirements/main.lock"))
    dependencies = first(lambda line: "pip install" in line and "-r requirements/main.lock" in line)
    sources = first(lambda line: line.startswith(("COPY processors", "COPY schemas", "COPY .")))
    package = first(lambda line: "pip install" in line and "--no-deps ." in line)
    assert lock < dependencies < sources < package
    assert lines[lock].split()[1:-1] == ["requirements/main.lock"]  # nothing else that changes
    assert "--require-hashes" in lines[dependencies]


def test_the_lock_files_pin_what_pyproject_pins() -> None:
    """The worker checks faust's, aiokafka's and mode's versions at start: the locks, the image
    and pyproject.toml must agree on them."""
    from processors.worker.faust_compat import PINNED

    pyproject = (ROOT / "pyproject.toml").read_text()
    for lock in ("main.lock", "dev.lock"):
        text = (ROOT / "requirements" / lock).read_text()
        for package, version in PINNED.items():
            assert f'"{package}=={version}"' in pyproject
            assert f"\n{package}=={version} \\\n" in text, (lock, package)


def test_dockerfile_runs_the_worker_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["orchestral-stream", "worker"]' in dockerfile
    for package in ("processors", "schemas", "config"):
        assert f"COPY {package} {package}" in dockerfile
    assert "devtools" not in dockerfile  # the dev broker and the test kit stay out of the image


def compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker is not None
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone is not None else None


@pytest.mark.skipif(
    compose_client() is None,
    reason="neither `docker compose` nor `docker-compose` is installed here (apt-get install "
    "docker-compose gives one); the structural tests above still run",
)
def test_docker_compose_config_accepts_the_file() -> None:
    client = compose_client()
    assert client is not None
    done = subprocess.run([*client, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compose_executor_runs_the_demo_agent_with_real_settings() -> None:
    executor = compose()["services"]["executor"]
    assert executor["command"][1:] == ["executor", "processors.executor.demo:reply"]
    names = {f"ORCHESTRAL_{name.upper()}" for name in Settings.model_fields}
    names |= {"KAFKA_BOOTSTRAP_SERVERS", "ORCHESTRAL_API_URL"}  # api_url_setting's alias
    assert set(executor["environment"]) <= names
