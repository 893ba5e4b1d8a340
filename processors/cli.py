"""`orchestral-stream`: the command line (broker, worker, send, tail, history, thread).

Settings come from the environment (`KAFKA_BOOTSTRAP_SERVERS`, `ORCHESTRAL_*`; see README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from config.settings import Settings, load_settings
from processors import exit_codes
from schemas.errors import BrokerSecurityError, ConfigurationError, OrchestralError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "broker":
        from processors import broker

        return broker.main(args.broker_args)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"orchestral-stream: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    if args.command in ("worker", "run"):
        from processors import worker

        if args.command == "run":
            problem = _ensure_local_broker(settings)
            if problem:
                print(f"orchestral-stream run: {problem}", file=sys.stderr)
                return 1
            print(FIRST_STEPS, flush=True)
        return worker.run(settings)
    try:
        return asyncio.run(COMMANDS[args.command](settings, args))
    except KeyboardInterrupt:
        return 130
    except BrokerSecurityError as exc:
        print(f"orchestral-stream {args.command}: {exc}", file=sys.stderr)
        return exit_codes.REFUSED
    except (OrchestralError, OSError, TimeoutError) as exc:
        print(f"orchestral-stream {args.command}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestral-stream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    broker = sub.add_parser("broker", help="a local Kafka broker: start | stop | status")
    broker.add_argument("broker_args", nargs=argparse.REMAINDER)
    sub.add_parser("worker", help="run the stream processor")
    sub.add_parser("run", help="start a local broker if none answers, then the worker")

    send = sub.add_parser("send", help="produce input records (flags, or JSON lines on stdin)")
    send.add_argument("--thread", help="thread id")
    send.add_argument("--type", default="user_input", help="event type, or `command`")
    send.add_argument("--text", help="payload {'message': TEXT}")
    send.add_argument("--payload", help="payload as JSON")
    send.add_argument("--kind", help="external_event kind / wait_event kind")
    send.add_argument("--level", default="info", help="system_trace level")
    send.add_argument("--reference-id", help="artifact reference id")
    send.add_argument("--command", dest="command_name", help="command name (with --type command)")
    send.add_argument("--interaction", help="interaction id")
    send.add_argument("--event-id", help="idempotency key (default: a new UUID)")
    send.add_argument("--policy", help="per-event concurrency override / configure policy")
    send.add_argument("--wait", action="store_true", help="wait for and print the outcome")

    tail = sub.add_parser("tail", help="follow the store and outcome topics")
    tail.add_argument("--thread", help="only this thread")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=int, default=0, help="stop after N records (0: follow)")

    history = sub.add_parser("history", help="a thread's stored events")
    history.add_argument("thread")
    history.add_argument("--limit", type=int, default=0, help="newest N, newest first (0: all)")

    thread = sub.add_parser("thread", help="a thread's state: interactions, queue, policy")
    thread.add_argument("thread")
    return parser


FIRST_STEPS = """\
orchestral-stream: starting the worker. In another terminal:
  .venv/bin/orchestral-stream send --thread demo --text "hello" --wait   # one event, its outcome
  .venv/bin/orchestral-stream tail                                        # follow store + outcomes
  .venv/bin/orchestral-stream history demo                                # the thread's events
Stop with Ctrl+C; stop the local broker with `.venv/bin/orchestral-stream broker stop`."""


def _ensure_local_broker(settings: Settings) -> str | None:
    """Start the project's broker when the configured address is local and nothing answers."""
    import socket

    from processors import broker

    host, _, port_text = settings.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port_text)), timeout=1):
            return None  # something listens: the worker's own check tells if it is Kafka
    except OSError:
        pass
    except ValueError:
        return f"cannot read a port from KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers!r}"
    if host not in ("127.0.0.1", "localhost", ""):
        return f"nothing answers at {settings.bootstrap_servers} (not local, so not starting one)"
    print(f"orchestral-stream run: no broker at {settings.bootstrap_servers}; starting a local one")
    try:
        info = broker.start(int(port_text))
    except broker.BrokerError as exc:
        return str(exc)
    where = f"{info.bootstrap_servers} (log {info.log_path})"
    print(f"orchestral-stream run: Kafka {info.version} on {where}")
    return None


def record_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.thread:
        raise OrchestralError("--thread is required (or pipe JSON lines on stdin)")
    record: dict[str, Any] = {"type": args.type, "thread_id": args.thread}
    if args.type == "command":
        record["command"] = args.command_name
        if args.policy:
            record["policy"] = args.policy
    elif args.policy:
        record["concurrency"] = args.policy
    if args.type in ("user_input", "assistant_output", "external_event", "system_trace"):
        record["payload"] = json.loads(args.payload) if args.payload else {"message": args.text}
    optional = {
        "interaction_id": args.interaction,
        "kind": args.kind,
        "reference_id": args.reference_id,
        "event_id": args.event_id,
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    if args.type == "system_trace":
        record["level"] = args.level
    return record


async def _send(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client import Client

    records = [record_from_flags(args)] if args.thread else _stdin_records()
    async with Client(settings) as client:
        for record in records:
            waiter = _outcome_waiter(client, record) if args.wait else None
            if waiter is not None:
                await asyncio.sleep(0)  # let the subscription seek before producing
            sent = await client.send(record)
            print(json.dumps({"sent": sent["event_id"], "thread_id": sent["thread_id"]}))
            if waiter is not None:
                print(json.dumps(await waiter))
    return 0


def _outcome_waiter(client: Any, record: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
    import uuid

    record.setdefault("event_id", str(uuid.uuid4()))

    async def wait() -> dict[str, Any]:
        async for _, value in client.subscribe(record["thread_id"]):
            if value.get("type") == "outcome" and value["source_event_id"] == record["event_id"]:
                return dict(value)
        raise OrchestralError("subscription ended")

    return asyncio.ensure_future(asyncio.wait_for(wait(), client.settings.connect_timeout * 2))


def _stdin_records() -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(sys.stdin, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise OrchestralError(f"stdin line {n} is not JSON: {exc}") from None
    return records


async def _tail(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client import Client

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
    return 0


async def _history(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client import Client

    async with Client(settings) as client:
        for event in await client.history(args.thread, args.limit):
            print(json.dumps(event, ensure_ascii=False))
    return 0


async def _thread(settings: Settings, args: argparse.Namespace) -> int:
    from processors.client import Client
    from processors.thread_view import describe_state

    async with Client(settings) as client:
        state = await client.thread_state(args.thread)
    if state is None:
        print(json.dumps({"thread_id": args.thread, "known": False}))
        return 1
    print(json.dumps(describe_state(state, settings), indent=2, ensure_ascii=False))
    return 0


COMMANDS = {"send": _send, "tail": _tail, "history": _history, "thread": _thread}


if __name__ == "__main__":
    sys.exit(main())
