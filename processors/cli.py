"""`orchestral-stream`: the command line (broker, worker, run, executor, send, tail, history,
thread, dlq, chat).

Settings come from the environment (`KAFKA_BOOTSTRAP_SERVERS`, `ORCHESTRAL_*`; see README).
Every failure is one line on stderr and an exit code from `processors.exit_codes`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from aiokafka.errors import KafkaError

from config.settings import Settings, load_settings
from processors import exit_codes
from processors.cli_errors import NothingToSend, UnknownThread, UsageError
from processors.cli_input import record_from_flags, stdin_records
from schemas.errors import (
    BrokerSecurityError,
    BrokerUnreachable,
    ConfigurationError,
    OrchestralError,
)
from schemas.records import INPUT_TYPES

PROG = "orchestral-stream"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 64 (argparse's own 2 is UNREACHABLE)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["broker"]:  # its own parser, so that `broker --help` shows its commands
        broker = _dev_broker()
        if broker is None:
            print(f"{PROG} broker: {NO_DEVTOOLS}", file=sys.stderr)
            return exit_codes.USAGE
        return int(broker.main(words[1:], prog=f"{PROG} broker"))
    try:
        args = _parser().parse_args(words)
        settings = load_settings()
    except (UsageError, ConfigurationError) as exc:
        return _fail(words[0] if words else "", exc, exit_codes.USAGE)
    if args.command in ("worker", "run"):
        return _run_worker(settings, args.command)
    if args.command == "executor":
        return _run_executor(settings, args.function)
    _quiet_kafka_logs(settings)
    try:
        return asyncio.run(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        return exit_codes.INTERRUPTED
    except (OrchestralError, KafkaError, OSError, TimeoutError) as exc:
        return _fail(args.command, exc, _exit_code(exc))


def _exit_code(exc: BaseException) -> int:
    from processors.client.client import OutcomeTimeout, RecordRefused
    from processors.client.thread_api import ThreadApiUnreachable

    codes: list[tuple[type[BaseException], int]] = [
        (ThreadApiUnreachable, exit_codes.TEMPFAIL),
        (UsageError, exit_codes.USAGE),
        (ConfigurationError, exit_codes.USAGE),
        (RecordRefused, exit_codes.DATA_ERROR),
        (NothingToSend, exit_codes.NO_INPUT),
        (BrokerUnreachable, exit_codes.UNREACHABLE),
        (BrokerSecurityError, exit_codes.REFUSED),
        (OutcomeTimeout, exit_codes.TIMEOUT),
    ]
    return next((code for kind, code in codes if isinstance(exc, kind)), exit_codes.FAILED)


def _fail(command: str, exc: BaseException, code: int) -> int:
    where = f"{PROG} {command}" if command in COMMAND_NAMES else PROG
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KafkaError | OSError) and type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    print(f"{where}: {text}", file=sys.stderr)
    return code


def _quiet_kafka_logs(settings: Settings) -> None:
    """aiokafka logs each failed connection attempt at ERROR, about one a second while the
    cluster is down; the CLI says what went wrong in one line instead (ORCHESTRAL_LOG_LEVEL=debug
    shows them)."""
    if settings.log_level == "debug":
        logging.basicConfig(level=logging.DEBUG)
        return
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL + 1)


def _run_worker(settings: Settings, command: str) -> int:
    from processors.worker import run as worker

    if command == "run":
        problem = _ensure_local_broker(settings)
        if problem:
            print(f"{PROG} run: {problem}", file=sys.stderr)
            return exit_codes.UNREACHABLE
        print(FIRST_STEPS, flush=True)
    return worker.run(settings)


def _run_executor(settings: Settings, spec: str) -> int:
    from processors.executor import Executor, load_handler
    from processors.executor.executor import install_signal_handlers

    try:
        handler = load_handler(spec)
    except OrchestralError as exc:
        return _fail("executor", exc, exit_codes.USAGE)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.root.level))

    async def serve() -> None:
        executor = Executor(handler, settings)
        install_signal_handlers(executor)
        await executor.run()

    try:
        asyncio.run(serve())
    except (OrchestralError, KafkaError, OSError) as exc:
        return _fail("executor", exc, _exit_code(exc))
    return exit_codes.OK


# --- arguments ------------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _boolean(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]


# argparse names these in its message ("invalid non-negative value: '-1'").
_non_negative.__name__ = "non-negative integer"
_positive_seconds.__name__ = "positive number of seconds"
_boolean.__name__ = "true/false"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("broker", help="a local Kafka broker: start | stop | status (see broker --help)")
    sub.add_parser("worker", help="run the stream processor")
    sub.add_parser("run", help="start a local broker if none answers, then the worker")
    executor = sub.add_parser(
        "executor",
        help="run an executor: MODULE:FUNCTION, an async function called once per activation",
    )
    executor.add_argument("function", metavar="MODULE:FUNCTION")
    _send_parser(sub)

    tail = sub.add_parser("tail", help="follow the store and outcome topics")
    tail.add_argument("--thread", help="only this thread")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=_non_negative, default=0, help="stop after N (0: follow)")

    history = sub.add_parser("history", help="a thread's stored events (exit 1: no such thread)")
    history.add_argument("thread")
    history.add_argument(
        "--limit", type=_non_negative, default=0, help="newest N, newest first (0: all)"
    )

    thread = sub.add_parser("thread", help="a thread's state (exit 1: no such thread)")
    thread.add_argument("thread")
    for reader in (history, thread):
        reader.add_argument(
            "--from-topics",
            action="store_true",
            help="read the store topic / changelog directly instead of a worker's thread API "
            "(debugging: scans the thread's partition)",
        )

    dlq = sub.add_parser("dlq", help="dead-lettered records with why (headers)")
    dlq.add_argument("--limit", type=_non_negative, default=0, help="the newest N (0: all)")
    dlq.add_argument("--follow", action="store_true", help="then wait for new ones")

    chat = sub.add_parser(
        "chat",
        help="talk to a thread's agent: each line a user_input, the replies as they stream",
        description="Each line on stdin is a user_input for THREAD; the thread's replies stream "
        "inline, with one line per outcome and per interaction change. /policy NAME switches "
        "the policy; EOF (Ctrl-D) quits after the last reply, Ctrl-C at once.",
    )
    chat.add_argument("thread")
    chat.add_argument(
        "--policy", help="send each line with this concurrency policy (interrupt, queue, merge...)"
    )
    return parser


def _send_parser(sub: Any) -> None:
    send = sub.add_parser(
        "send",
        help="produce input records (flags, or JSON lines on stdin)",
        description="Produce one record from flags, or one per JSON line on stdin. Records are "
        "checked as the worker would: one it would refuse is not sent (exit 65).",
    )
    send.add_argument("--thread", help="thread id (without it: JSON lines on stdin)")
    send.add_argument("--type", default="user_input", choices=INPUT_TYPES, help="user_input")
    send.add_argument("--text", help="payload {'message': TEXT}")
    send.add_argument("--payload", help="payload as JSON")
    send.add_argument("--kind", help="external_event kind / wait_event kind")
    send.add_argument("--level", help="system_trace level (default info)")
    send.add_argument("--reference-id", help="artifact reference id")
    send.add_argument("--command", dest="command_name", help="command name (with --type command)")
    send.add_argument("--interaction", help="interaction id")
    send.add_argument("--task-id", help="task id (events; add_task)")
    send.add_argument("--step-id", help="step id (events)")
    send.add_argument("--expected-interaction", help="merge only into this interaction (events)")
    send.add_argument(
        "--policy",
        help='a policy name or JSON such as \'{"name":"queue","max_queue_depth":3}\': '
        "a per-event override, or with --command configure the thread's policy",
    )
    send.add_argument("--max-interactions", type=int, help="configure: max_interactions_per_thread")
    send.add_argument("--auto-cleanup", type=_boolean, help="configure: true or false")
    send.add_argument("--event-id", help="idempotency key (default: a new UUID)")
    send.add_argument("--timestamp", help="RFC 3339 (default: now)")
    send.add_argument("--wait", action="store_true", help="wait for and print the outcome")
    send.add_argument(
        "--timeout", type=_positive_seconds, default=60.0, help="--wait: seconds (default 60)"
    )


FIRST_STEPS = """\
orchestral-stream: starting the worker. In another terminal:
  .venv/bin/orchestral-stream send --thread demo --text "hello" --wait   # one event, its outcome
  .venv/bin/orchestral-stream tail                                        # follow store + outcomes
  .venv/bin/orchestral-stream history demo                                # the thread's events
  .venv/bin/orchestral-stream thread demo                                 # its interactions, policy
Stop with Ctrl+C; stop the local broker with `.venv/bin/orchestral-stream broker stop`."""


NO_DEVTOOLS = (
    "the development broker comes with a source checkout (devtools/), not with the package"
)


def _dev_broker() -> Any:
    """The development broker (devtools/broker.py): in a checkout, also from the installed
    `orchestral-stream` script of an editable install, whose path lacks the checkout's root."""
    try:
        from devtools import broker
    except ImportError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "devtools" / "broker.py").is_file():
            return None
        sys.path.append(str(root))
        from devtools import broker
    return broker


def _ensure_local_broker(settings: Settings) -> str | None:
    """Start the project's broker when the configured address is local and nothing answers."""
    import socket

    host, port = settings.bootstrap_addresses[0]
    try:
        with socket.create_connection((host, port), timeout=1):
            return None  # something listens: the worker's own check tells if it is Kafka
    except OSError:
        pass
    if host not in ("127.0.0.1", "localhost"):
        return f"nothing answers at {settings.bootstrap_servers} (not local, so not starting one)"
    broker = _dev_broker()
    if broker is None:
        return f"nothing answers at {settings.bootstrap_servers}, and {NO_DEVTOOLS}"
    print(f"{PROG} run: no broker at {settings.bootstrap_servers}; starting a local one")
    try:
        info = broker.start(port)
    except broker.BrokerError as exc:
        return str(exc)
    where = f"{info.bootstrap_servers} (log {info.log_path})"
    print(f"{PROG} run: Kafka {info.version} on {where}")
    return None


# --- send -----------------------------------------------------------------------------------


async def _send(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client.client import Client, RecordRefused

    records = [("", record_from_flags(args))] if args.thread else stdin_records()
    client = Client(settings)
    prepared = []
    for where, record in records:  # all checked before the first is produced
        try:
            prepared.append(client.prepare(record).record)
        except RecordRefused as exc:
            raise RecordRefused(f"{where}: {exc.reason}" if where else exc.reason) from None
    code = exit_codes.OK
    async with client:
        for record in prepared:
            if args.wait:
                code = code or await _send_and_wait(client, record, args.timeout)
            else:
                sent = await client.send(record)
                print(json.dumps({"sent": sent["event_id"], "thread_id": sent["thread_id"]}))
    return code


async def _send_and_wait(client: Any, record: dict[str, Any], timeout: float) -> int:
    from processors.client.client import Delivery, OutcomeTimeout

    def sent(delivery: Delivery) -> None:
        line = {"sent": delivery.record["event_id"], "thread_id": delivery.record["thread_id"]}
        print(json.dumps({**line, "partition": delivery.partition, "offset": delivery.offset}))

    try:
        delivery = await client.send_and_wait(record, timeout)
    except OutcomeTimeout as exc:
        sent(exc.delivery)
        raise
    sent(delivery)
    outcome = delivery.outcome or {}
    print(json.dumps(outcome, ensure_ascii=False), flush=True)
    status = outcome.get("status")
    if status not in ("rejected", "invalid"):
        return exit_codes.OK
    print(
        f"{PROG} send: event {record['event_id']} {status}: {outcome.get('reason')}",
        file=sys.stderr,
    )
    return exit_codes.REJECTED if status == "rejected" else exit_codes.DATA_ERROR


# --- reading --------------------------------------------------------------------------------


async def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client.client import Client

    async with Client(settings) as client:
        stream: AsyncIterator[tuple[str, dict[str, Any]]] = client.subscribe(
            args.thread, from_beginning=args.from_beginning
        )
        count = 0
        async for topic, value in stream:
            print(f"{topic}\t{json.dumps(value, ensure_ascii=False)}", flush=True)
            count += 1
            if args.max and count >= args.max:
                break
    return exit_codes.OK


async def _history(settings: Settings, args: argparse.Namespace) -> int:
    if args.from_topics:
        from processors.client.client import Client

        async with Client(settings) as client:
            events = await client.history(args.thread, args.limit)
            # A thread only configured so far has a state but no event: it exists.
            known = bool(events) or await client.thread_state(args.thread) is not None
    else:
        from processors.client.thread_api import ThreadApiClient

        async with ThreadApiClient(settings) as api:
            events = await api.history(args.thread, args.limit)
            known = bool(events) or await api.thread(args.thread) is not None
    if not known:
        raise UnknownThread(f"no thread {args.thread!r}")
    for event in events:
        print(json.dumps(event, ensure_ascii=False))
    return exit_codes.OK


async def _thread(settings: Settings, args: argparse.Namespace) -> int:
    view: dict[str, Any] | None
    if args.from_topics:
        from processors.client.client import Client
        from processors.client.thread_view import describe_state

        async with Client(settings) as client:
            state = await client.thread_state(args.thread)
        view = describe_state(state, settings) if state is not None else None
    else:
        from processors.client.thread_api import ThreadApiClient

        async with ThreadApiClient(settings) as api:
            view = await api.thread(args.thread)
    if view is None:
        raise UnknownThread(f"no thread {args.thread!r}")
    print(json.dumps(view, indent=2, ensure_ascii=False))
    return exit_codes.OK


async def _dlq(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client.client import Client

    async with Client(settings) as client:
        async for view in client.dead_letters(args.limit, follow=args.follow):
            print(json.dumps(view, ensure_ascii=False), flush=True)
    return exit_codes.OK


async def _chat(settings: Settings, args: argparse.Namespace) -> int:
    from processors.chat import chat

    return await chat(settings, args)


COMMANDS = {
    "send": _send,
    "tail": _tail,
    "history": _history,
    "thread": _thread,
    "dlq": _dlq,
    "chat": _chat,
}
COMMAND_NAMES = frozenset({*COMMANDS, "worker", "run", "broker", "executor"})


if __name__ == "__main__":
    sys.exit(main())
