"""`orchestral-stream chat` in a pseudo-terminal, against a real broker, a worker and the demo
agent (`orchestral-stream executor processors.executor.demo:reply`), as a newcomer types."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator

import pytest

from devtools.deployment import ROOT, Deployment, delete_topics
from processors.client.client import Client

pytestmark = pytest.mark.integration

AGENT = "processors.executor.demo:reply"
BUSY = "System is busy processing another request"


@pytest.fixture(scope="module")
def live(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A worker and the demo agent, both ready: the worker has answered a record and the
    agent holds its partitions."""
    d = Deployment(kafka, "t-chat", tmp_path_factory.mktemp("chat"), partitions=2)
    d.create_topics()
    worker = d.worker().start()
    agent = d.executor(0, AGENT, worker).start()
    try:
        first = {"type": "user_input", "thread_id": "warm-up", "payload": {"message": "hi"}}
        asyncio.run(_send_and_wait(d, first))
        deadline = time.monotonic() + 90
        while "executor holds partitions [" not in agent.log():
            assert agent.alive() and time.monotonic() < deadline, agent.log_tail()
            time.sleep(0.2)
        yield d
    finally:
        d.stop_all()
        topics = [f"{d.name}.{t}" for t in ("events", "store", "outcomes", "dlq")]
        asyncio.run(delete_topics(kafka, [*topics, d.settings.changelog_topic]))


async def _send_and_wait(d: Deployment, record: dict[str, str | dict[str, str]]) -> None:
    async with Client(d.settings) as client:
        await client.send_and_wait(record, timeout=120)


class PtyChat:
    """The chat on a pseudo-terminal it has as its controlling terminal (so ^C is SIGINT)."""

    def __init__(self, d: Deployment, thread: str, *args: str) -> None:
        master, slave = os.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processors.cli", "chat", thread, *args],
            cwd=ROOT,
            env={**os.environ, **d.env},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=_take_terminal,
        )
        os.close(slave)
        self.seen = ""  # everything shown so far
        self.read = 0  # how much of it `expect` has consumed

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def expect(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """The next match of `pattern` in what the chat shows, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.compile(pattern).search(self.seen, self.read)
            if match:
                self.read = match.end()
                return match
            left = deadline - time.monotonic()
            assert left > 0 and self._pump(left), f"no {pattern!r} in:\n{self.seen}"

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], min(timeout, 0.2))
        if ready:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the chat has exited and closed the terminal
                return False
            self.seen += data.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._pump(0.2)
        return self.proc.wait(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _take_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def thread() -> str:
    return f"chat-{uuid.uuid4()}"


def test_a_reply_streams_an_interrupt_restarts_it_and_reject_refuses(
    live: Deployment, thread: str
) -> None:
    chat = PtyChat(live, thread, "--policy", "interrupt")
    try:
        chat.expect(r"· chat on thread .* policy interrupt")
        chat.type("hello\n")
        first = chat.expect(r"· started (\w{4})…").group(1)
        chat.expect(rf"agent {first}…: You said “hello”\. I see no")  # words, on one line
        chat.type("again\n")
        chat.expect(rf"· interaction {first}… active → cancelled")
        second = chat.expect(r"· started (\w{4})…").group(1)
        chat.expect(
            rf"agent {second}…: You said “again”\. I see 1 earlier message from you, "
            "the last “hello”."
        )
        chat.expect(r"In short: “again”, noted\.")
        chat.expect(rf"· interaction {second}… active → completed")

        chat.type("/policy reject\n")
        chat.expect(r"· policy reject from now on")
        chat.type("one\n")
        third = chat.expect(r"· started (\w{4})…").group(1)
        chat.expect(rf"agent {third}…: You said “one”")
        chat.type("two\n")
        chat.expect(rf"· rejected: {BUSY}")
        chat.expect(rf"· interaction {third}… active → completed")
        chat.type("\x04")  # Ctrl-D: EOF, after the last reply
        assert chat.wait() == 0
    finally:
        chat.close()
    assert "Traceback" not in chat.seen
    assert chat.seen.count("agent ") >= 3  # each reply is one line, not a line per word


def test_with_merge_a_second_line_steers_the_running_reply(live: Deployment, thread: str) -> None:
    chat = PtyChat(live, thread, "--policy", "merge")
    try:
        chat.type("hello\n")
        iid = chat.expect(r"· started (\w{4})…").group(1)
        chat.expect(rf"agent {iid}…: You said")
        chat.type("be brief\n")
        chat.expect(rf"· merged into {iid}…")
        chat.expect(r"\(ok, also: “be brief”\)")
        chat.expect(r"In short: “hello”, and also “be brief”, noted\.")
        chat.expect(rf"· interaction {iid}… active → completed")
        chat.type("\x03")  # Ctrl-C
        assert chat.wait() == 130
    finally:
        chat.close()
    assert "Traceback" not in chat.seen
    assert "· started" in chat.seen and chat.seen.count("· started") == 1  # merged, not started
