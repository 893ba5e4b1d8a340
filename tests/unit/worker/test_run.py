"""processors/worker/run.py: a second worker on the same web port says so in one line and exits 69.

The port is checked before the cluster is contacted, so no broker is needed here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.deployment import free_port
from processors import exit_codes
from processors.worker.run import web_port_problem

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as a running worker's web server does."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_taken_port_stops_the_worker_in_one_line(taken_port: int, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ORCHESTRAL_WEB_HOST": "127.0.0.1",
        "ORCHESTRAL_WEB_PORT": str(taken_port),
        "ORCHESTRAL_DATA_DIR": str(tmp_path / "data"),
        # Nothing listens there: the worker must stop before trying the cluster.
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "ORCHESTRAL_CONNECT_TIMEOUT": "30",
    }
    done = subprocess.run(
        [sys.executable, "-m", "processors.cli", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == exit_codes.UNAVAILABLE
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"orchestral-stream worker: port {taken_port} on 127.0.0.1 is in use (another worker?): "
        "set ORCHESTRAL_WEB_PORT"
    ]


def test_a_free_port_passes(taken_port: int) -> None:
    assert web_port_problem("127.0.0.1", free_port()) is None


def test_a_closed_but_lingering_socket_is_no_conflict() -> None:
    """A previous worker's connections in TIME_WAIT must not stop the next one."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first: its end lingers in TIME_WAIT
        client.close()
    assert web_port_problem("127.0.0.1", port) is None


def test_a_host_that_is_not_ours_is_a_usage_error() -> None:
    problem = web_port_problem("192.0.2.1", 6066)  # TEST-NET-1: no local interface has it
    assert problem is not None
    message, code = problem
    assert code == exit_codes.USAGE
    assert "ORCHESTRAL_WEB_HOST" in message
