"""`make demo`: the chat demo in one command.

A local broker (started if none answers), a worker (unless one already answers on
ORCHESTRAL_WEB_PORT) and an executor running the demo agent (`processors.executor.demo:reply`,
or `--agent`) run in the background, logging to var/demo/; the chat runs in the foreground on
thread `demo`. On exit, what this started is stopped.

    python -m devtools.demo [--policy interrupt] [--thread demo] [--agent MODULE:FUNCTION]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from config.settings import Settings, load_settings
from devtools import broker
from schemas.errors import OrchestralError

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "var" / "demo"
AGENT = "processors.executor.demo:reply"
READY_TIMEOUT = 120.0


class DemoError(RuntimeError):
    """A part of the demo did not start: the message says which, and where its log is."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--policy", default="interrupt", help="the chat's policy (interrupt)")
    parser.add_argument("--thread", default="demo")
    parser.add_argument("--agent", default=AGENT, help=f"the executor's function ({AGENT})")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        with _background(settings, args.thread, args.agent):
            print(
                f"demo: logs in {LOGS.relative_to(ROOT)}/; stop with Ctrl-D or Ctrl-C", flush=True
            )
            code = _chat(args.thread, args.policy)
    except (DemoError, OrchestralError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0 if code == 130 else code  # Ctrl-C is how a demo ends


def _chat(thread: str, policy: str) -> int:
    from processors import cli

    return cli.main(["chat", thread, "--policy", policy])


@contextlib.contextmanager
def _background(settings: Settings, thread: str, agent_function: str) -> Iterator[None]:
    """The broker, the worker and the agent, each stopped on exit if this started it."""
    with contextlib.ExitStack() as started:
        host, port = settings.bootstrap_addresses[0]
        if not _listening(host, port):
            started.callback(_stop_broker, _start_broker(host, port))
        LOGS.mkdir(parents=True, exist_ok=True)
        web = f"http://{settings.web_host}:{settings.web_port}"
        if _ready(web):
            print(f"demo: using the worker that answers at {web}", flush=True)
        else:
            worker = _spawn(["worker"], LOGS / "worker.log")
            started.callback(_stop, worker, "worker")
            _wait(lambda: _ready(web), worker, "worker", LOGS / "worker.log")
        asyncio.run(_fresh_start(settings, thread))
        agent = _spawn(["executor", agent_function], LOGS / "executor.log")
        started.callback(_stop, agent, "agent")
        holding = b"executor holds partitions"  # it follows the outcomes: replies can come
        _wait(
            lambda: holding in _read(LOGS / "executor.log"), agent, "agent", LOGS / "executor.log"
        )
        yield


async def _fresh_start(settings: Settings, thread: str) -> None:
    """Cancel what an earlier demo left running on the thread, before the agent re-runs it."""
    from processors.client.client import Client

    async with Client(settings) as client:
        await client.send({"type": "command", "command": "cancel_all", "thread_id": thread})


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _start_broker(host: str, port: int) -> int:
    if host not in ("127.0.0.1", "localhost"):
        raise DemoError(f"nothing answers at {host}:{port} (not local, so not starting one)")
    print(f"demo: starting a local Kafka broker on {host}:{port}", flush=True)
    try:
        info = broker.start(port, timeout=READY_TIMEOUT)
    except broker.BrokerError as exc:
        raise DemoError(str(exc)) from None
    print(f"demo: broker log {info.log_path}", flush=True)
    return port


def _stop_broker(port: int) -> None:
    print("demo: stopping the broker", flush=True)
    broker.stop(port)


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`orchestral-stream COMMAND` in its own session: the chat's Ctrl-C is not theirs."""
    print(f"demo: starting {' '.join(command)} (log {log.relative_to(ROOT)})", flush=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "processors.cli", *command],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(done: Callable[[], bool], proc: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not done():
        if proc.poll() is not None:
            raise DemoError(f"the {name} exited ({proc.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise DemoError(f"the {name} was not ready within {READY_TIMEOUT:g} s; see {log}")
        time.sleep(0.5)


def _ready(web: str) -> bool:
    try:
        with urllib.request.urlopen(f"{web}/readyz", timeout=1) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is None:
        print(f"demo: stopping the {name}", flush=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            print(f"demo: the {name} did not stop within 15 s: killed", file=sys.stderr)
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C while starting up
        sys.exit(main())
    sys.exit(0)
