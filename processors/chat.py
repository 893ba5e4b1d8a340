"""`orchestral-stream chat THREAD`: talk to the agent of one thread from a terminal.

Each line typed is a `user_input` for THREAD (with `concurrency: NAME` under `--policy NAME`);
the thread's store and outcome records are followed from its partitions and shown as a chat:
the agent's `assistant_output` text inline as it streams, and one compact `·` line per outcome of
our own input and per interaction state change, so interrupt, queue, steer and reject are visible.

`Transcript` decides what each record prints and does no I/O; the rest reads stdin, produces and
follows the topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from config.settings import Settings
from processors.cli_errors import UsageError
from processors.client.client import Client, RecordRefused
from processors.executor.messages import payload_text
from processors.kafka.connection import start_client
from schemas.errors import OrchestralError
from schemas.records import POLICY_ALIASES, POLICY_NAMES, PolicySpec

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# After EOF the chat stays while a reply is still running, but not forever (no executor?).
LINGER_QUIET_SECONDS = 10.0
_MAX_LINE_BYTES = 1 << 20
_TRACE_CHARS = 80

# --- what each record prints (pure) ---------------------------------------------------------


def short_id(interaction_id: str | None) -> str:
    """The first 4 characters: enough to tell a demo's interactions apart."""
    return f"{interaction_id[:4]}…" if interaction_id else "-"


def outcome_line(record: dict[str, Any]) -> str | None:
    """The compact line for the outcome of one of our own inputs (None: nothing to show).

    `started` and `resumed` are left to the interaction records, which also announce a start
    from the queue (which has no outcome of its own)."""
    status = record.get("status")
    iid = record.get("interaction_id")
    if status == "merged":
        return f"· merged into {short_id(iid)}"
    if status == "queued":
        return f"· queued (position {record.get('queue_position')})"
    if status in ("rejected", "invalid"):
        return f"· {status}: {record.get('reason')}"
    if status == "duplicate":
        return "· duplicate: already sent"
    return None


def interaction_line(record: dict[str, Any], *, was_queued: bool = False) -> str:
    """`· started 3f2a…` for a new interaction, else `· interaction 3f2a… active → completed`."""
    iid = short_id(record.get("interaction_id"))
    previous, state = record.get("previous_state"), record.get("state")
    if previous is None:
        return f"· started {iid}" + (" (from the queue)" if was_queued else "")
    notes = [str(record["reason"])] if record.get("reason") else []
    if record.get("rolled_back"):
        notes.append("rolled back")
    suffix = f" ({', '.join(notes)})" if notes else ""
    return f"· interaction {iid} {previous} → {state}{suffix}"


def store_line(record: dict[str, Any]) -> str | None:
    """The compact line for a stored event that is not the agent's text or our own input."""
    kind, iid, payload = record.get("type"), record.get("interaction_id"), record.get("payload")
    if kind == "user_input":
        return f"· someone else: {payload_text(payload)}"
    if kind == "external_event":
        return f"· external event {record.get('kind')}: {_clip(payload_text(payload))}"
    if kind == "artifact":
        return f"· artifact {record.get('reference_id')} ({short_id(iid)})"
    if kind == "system_trace":
        if iid is None and isinstance(payload, dict) and "event_type" in payload:
            mark = str(payload["event_type"]).replace("_", " ")  # a lifecycle mark
            return f"· {mark} {short_id(payload.get('interaction_id'))}".rstrip(" -")
        return f"· trace {short_id(iid)} {record.get('level')}: {_clip(payload_text(payload))}"
    return None


def _clip(text: str) -> str:
    return text if len(text) <= _TRACE_CHARS else text[: _TRACE_CHARS - 1] + "…"


@dataclass
class Transcript:
    """What the chat prints for each record of its thread, and what it still waits for.

    It tracks the cursor: while an interaction's words stream, they continue the current line;
    anything else starts a line of its own."""

    own: set[str] = field(default_factory=set)  # event ids this chat sent
    unanswered: set[str] = field(default_factory=set)  # ... with no outcome yet
    queued: set[str] = field(default_factory=set)  # ... answered `queued`
    states: dict[str, str] = field(default_factory=dict)  # interaction id -> its state
    streaming: str | None = None  # the interaction whose words end the current line

    def sent(self, event_id: str) -> None:
        self.own.add(event_id)
        self.unanswered.add(event_id)

    def line_start(self) -> None:
        """The cursor is at a line start (the terminal echoed the user's Enter)."""
        self.streaming = None

    @property
    def busy(self) -> bool:
        """An input of ours has no outcome yet, or an interaction seen is not terminal."""
        return bool(self.unanswered) or any(s not in TERMINAL for s in self.states.values())

    def render(self, topic: str, record: dict[str, Any]) -> str:
        """The text to write for one record of the thread (maybe empty)."""
        if topic == "store":
            return self._stored(record)
        if record.get("type") == "interaction":
            return self._interaction(record)
        return self._outcome(record)

    def line(self, text: str) -> str:
        """`text` on a line of its own."""
        before = "\n" if self.streaming is not None else ""
        self.streaming = None
        return f"{before}{text}\n"

    def end(self) -> str:
        """What ends the transcript: the streamed line's newline, if one is open."""
        if self.streaming is None:
            return ""
        self.streaming = None
        return "\n"

    def _stored(self, record: dict[str, Any]) -> str:
        if record.get("type") == "assistant_output":
            return self._words(record.get("interaction_id"), payload_text(record.get("payload")))
        if record.get("type") == "user_input" and record.get("event_id") in self.own:
            return ""  # the user just typed it
        text = store_line(record)
        return self.line(text) if text else ""

    def _words(self, iid: str | None, text: str) -> str:
        if self.streaming == iid:
            return text
        before = "\n" if self.streaming is not None else ""
        self.streaming = iid
        return f"{before}agent {short_id(iid)}: {text}"

    def _interaction(self, record: dict[str, Any]) -> str:
        self.states[str(record.get("interaction_id"))] = str(record.get("state"))
        was_queued = record.get("previous_state") is None and record.get("cause_event_id") in (
            self.queued
        )
        return self.line(interaction_line(record, was_queued=was_queued))

    def _outcome(self, record: dict[str, Any]) -> str:
        source = record.get("source_event_id")
        if source not in self.own:
            return ""  # the executor's outputs and commands: their effect shows elsewhere
        self.unanswered.discard(str(source))
        if record.get("status") == "queued":
            self.queued.add(str(source))
        text = outcome_line(record)
        return self.line(text) if text else ""


# --- input lines ----------------------------------------------------------------------------


def policy_name(text: str) -> str:
    """A policy name or alias as the worker knows it, or UsageError naming the choices."""
    try:
        return str(PolicySpec.model_validate(text).name)
    except ValidationError:
        names = ", ".join([*POLICY_NAMES, *POLICY_ALIASES])
        raise UsageError(f"unknown policy {text!r} (one of {names})") from None


def user_input(thread_id: str, text: str, policy: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "user_input",
        "thread_id": thread_id,
        "payload": {"message": text},
        "event_id": str(uuid.uuid4()),  # known before producing: its outcome may come first
    }
    if policy is not None:
        record["concurrency"] = policy
    return record


HELP = (
    "type a message; /policy NAME switches the policy (none: the thread's); Ctrl-D or Ctrl-C quits"
)


def banner(thread_id: str, policy: str | None) -> str:
    return f"· chat on thread {thread_id!r}, policy {policy or 'of the thread'}: {HELP}"


# --- the terminal ---------------------------------------------------------------------------


class Lines:
    """stdin's lines, asyncio-friendly: a pipe transport for pipes and terminals, else (a
    regular file) a reader thread. `None` at EOF."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._reader: asyncio.StreamReader | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._nonblocking_fd: int | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE_BYTES)
        # A duplicate descriptor: closing the transport must not close the process's stdin.
        pipe = os.fdopen(os.dup(self._stream.fileno()), "rb", buffering=0)
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except ValueError:  # a regular file: read it in a thread
            pipe.close()
            threading.Thread(target=self._read_blocking, args=(loop,), daemon=True).start()
            return
        self._reader = reader
        self._nonblocking_fd = self._stream.fileno()

    def _read_blocking(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in iter(self._stream.buffer.readline, b""):
            loop.call_soon_threadsafe(self._queue.put_nowait, line)
        loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def next(self) -> str | None:
        """The next line without its newline, or None at EOF. ValueError: a line too long."""
        if self._reader is None:
            data = await self._queue.get()
        else:
            try:
                data = await self._reader.readline() or None
            except (asyncio.LimitOverrunError, ValueError):
                raise ValueError(f"a line over {_MAX_LINE_BYTES} bytes") from None
        return None if data is None else data.decode("utf-8", "replace").rstrip("\r\n")

    def close(self) -> None:
        # The transport left the terminal non-blocking, and the shell shares it: undo that.
        if self._nonblocking_fd is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self._nonblocking_fd, True)


# --- following the thread -------------------------------------------------------------------


@dataclass
class InOrder:
    """Records of two topics back in the order they were written, as far as their timestamps
    tell: a batch of one partition can arrive before an earlier one of the other (a reply's
    last words after its `completed`). Each record is held `hold` seconds for an earlier one
    to catch up; the worker writes an input's store records before its outcome records, so at
    the same millisecond the store comes first."""

    hold: float = 0.2
    _held: list[tuple[int, int, int, float, str, dict[str, Any]]] = field(default_factory=list)
    _count: int = 0  # arrival order, among equals

    def add(self, timestamp: int, topic: str, record: dict[str, Any], arrived: float) -> None:
        self._count += 1
        rank = 0 if topic == "store" else 1
        self._held.append((timestamp, rank, self._count, arrived, topic, record))
        self._held.sort(key=lambda held: held[:3])

    def due(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """The records held long enough, oldest first (a younger one ahead holds the rest)."""
        out: list[tuple[str, dict[str, Any]]] = []
        while self._held and self._held[0][3] <= now - self.hold:
            *_, topic, record = self._held.pop(0)
            out.append((topic, record))
        return out


async def follow(
    client: Client, thread_id: str
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """The thread's store and outcome records from now on: ("store" | "outcomes", record).

    Yields ("ready", {}) first, once the reader's positions are fixed at the partitions' ends:
    anything produced after that is seen."""
    settings = client.settings
    names = {settings.store_topic: "store", settings.outcomes_topic: "outcomes"}
    consumer = client.reader()
    await start_client(consumer, settings)
    try:
        tps = [
            tp
            for topic in names
            for tp in await client.thread_partitions(consumer, topic, thread_id)
        ]
        if len(tps) < len(names):
            raise OrchestralError(
                f"topics {', '.join(names)} do not exist at {settings.bootstrap_servers}: "
                "a worker creates them when it starts"
            )
        consumer.assign(tps)
        for tp, end in (await consumer.end_offsets(tps)).items():
            consumer.seek(tp, end)  # explicit positions, not a lazy reset that could skip
        yield "ready", {}
        key, in_order = thread_id.encode(), InOrder()
        while True:
            batch = await consumer.getmany(timeout_ms=50)
            arrived = time.monotonic()
            for message in (m for ms in batch.values() for m in ms if m.key == key):
                record = client.decoder.decode_value(message.value)
                in_order.add(message.timestamp, names[message.topic], record, arrived)
            for item in in_order.due(time.monotonic()):
                yield item
    finally:
        await consumer.stop()


@dataclass
class Chat:
    settings: Settings
    thread_id: str
    policy: str | None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    transcript: Transcript = field(default_factory=Transcript)
    echo: bool = False  # stdin is not a terminal: show what was sent
    last_record: float = field(default_factory=time.monotonic)

    def write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    async def run(self) -> None:
        async with Client(self.settings) as client:
            records = follow(client, self.thread_id)
            await anext(records)  # positioned: from here on nothing is missed
            watcher = asyncio.create_task(self._show(records))
            lines = Lines(sys.stdin)
            await lines.start()
            try:
                self.write(self.transcript.line(banner(self.thread_id, self.policy)))
                await self._talk(client, lines, watcher)
                await self._linger(watcher)
            finally:
                lines.close()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await records.aclose()
                self.write(self.transcript.end())

    async def _show(self, records: AsyncIterator[tuple[str, dict[str, Any]]]) -> None:
        async for topic, record in records:
            self.last_record = time.monotonic()
            self.write(self.transcript.render(topic, record))

    async def _talk(self, client: Client, lines: Lines, watcher: asyncio.Task[None]) -> None:
        while True:
            try:
                line = await _first(lines.next(), watcher)
            except ValueError as exc:
                self.write(self.transcript.line(f"· not sent: {exc}"))
                continue
            if line is None:
                return
            if not self.echo:
                self.transcript.line_start()
            await self._handle(client, line)

    async def _handle(self, client: Client, line: str) -> None:
        text = line.strip()
        if not text:
            return
        if text.startswith("/"):
            self.write(self.transcript.line(self._command(text)))
            return
        record = user_input(self.thread_id, line, self.policy)
        if self.echo:
            self.write(self.transcript.line(f"> {line}"))
        self.transcript.sent(record["event_id"])
        try:
            await client.send(record)
        except RecordRefused as exc:
            self.transcript.unanswered.discard(record["event_id"])
            self.write(self.transcript.line(f"· not sent: {exc.reason}"))

    def _command(self, text: str) -> str:
        words = text.split()
        if words[0] == "/policy" and len(words) == 2:
            try:
                self.policy = policy_name(words[1])
            except UsageError as exc:
                return f"· {exc}"
            return f"· policy {self.policy} from now on"
        return f"· {HELP}"

    async def _linger(self, watcher: asyncio.Task[None]) -> None:
        """At EOF: stay while a reply is still coming, unless the thread has gone quiet."""
        while self.transcript.busy and not watcher.done():
            if time.monotonic() - self.last_record > LINGER_QUIET_SECONDS:
                quiet = f"nothing new for {LINGER_QUIET_SECONDS:g} s (is an executor running?)"
                self.write(self.transcript.line(f"· leaving: {quiet}"))
                return
            await asyncio.sleep(0.1)
        if watcher.done():
            watcher.result()  # the follower's error, if it failed


async def _first(reading: Any, watcher: asyncio.Task[None]) -> str | None:
    """The next line, unless the follower fails first (then its error). ValueError: a line
    too long (skipped)."""
    read: asyncio.Task[str | None] = asyncio.ensure_future(reading)
    await asyncio.wait([read, watcher], return_when=asyncio.FIRST_COMPLETED)
    if not read.done():
        read.cancel()
        watcher.result()
        return None  # the follower ended without an error: nothing left to show
    return read.result()


async def chat(settings: Settings, args: Any) -> int:
    """The `chat` command: exit 0 at EOF (Ctrl-D), after the last reply."""
    policy = policy_name(args.policy) if args.policy else None
    await Chat(settings, args.thread, policy, echo=not sys.stdin.isatty()).run()
    return 0
