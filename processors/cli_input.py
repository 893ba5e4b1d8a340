"""The records `orchestral-stream send` produces: from its flags, or JSON lines on stdin."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from processors.cli_errors import NothingToSend, UsageError
from schemas.records import EVENT_TYPES, INPUT_TYPES

PAYLOAD_TYPES = ("user_input", "assistant_output", "external_event", "system_trace")
# flag -> (record field, the types it applies to): a flag the record would silently drop is
# refused instead.
FIELD_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kind": ("kind", ("external_event", "command")),
    "level": ("level", ("system_trace",)),
    "reference_id": ("reference_id", ("artifact",)),
    "interaction": ("interaction_id", INPUT_TYPES),
    "task_id": ("task_id", INPUT_TYPES),
    "step_id": ("step_id", EVENT_TYPES),
    "expected_interaction": ("expected_interaction_id", EVENT_TYPES),
    "max_interactions": ("max_interactions_per_thread", ("command",)),
    "auto_cleanup": ("auto_cleanup", ("command",)),
    "event_id": ("event_id", INPUT_TYPES),
    "timestamp": ("timestamp", INPUT_TYPES),
}


def record_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The record the flags describe; UsageError for a flag that is missing or does not apply."""
    kind = args.type
    record: dict[str, Any] = {"type": kind, "thread_id": args.thread}
    if kind == "command":
        if not args.command_name:
            raise UsageError("--type command needs --command NAME")
        record["command"] = args.command_name
    elif args.command_name:
        raise UsageError("--command applies to --type command")
    if args.policy is not None:
        record["policy" if kind == "command" else "concurrency"] = _policy(args.policy)
    payload = _payload(args)
    if kind in PAYLOAD_TYPES:
        record["payload"] = payload
    elif payload is not _NO_PAYLOAD:
        raise UsageError(f"--text / --payload do not apply to --type {kind}")
    for flag, (name, types) in FIELD_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if kind not in types:
            raise UsageError(f"--{flag.replace('_', '-')} does not apply to --type {kind}")
        record[name] = value
    if kind == "system_trace":
        record.setdefault("level", "info")
    return record


_NO_PAYLOAD: Any = object()


def _payload(args: argparse.Namespace) -> Any:
    if args.text is not None and args.payload is not None:
        raise UsageError("give --text or --payload, not both")
    if args.payload is not None:
        try:
            return json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--payload is not JSON: {exc}") from None
    if args.text is not None:
        return {"message": args.text}
    if args.type in PAYLOAD_TYPES:
        raise UsageError(f"--type {args.type} needs --text or --payload")
    return _NO_PAYLOAD


def _policy(text: str) -> Any:
    """A bare name (`queue`), or JSON (`{"name": "queue", "max_queue_depth": 3}`)."""
    if not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--policy is not JSON: {exc}") from None


def stdin_records() -> list[tuple[str, Any]]:
    """(where, value) per non-blank stdin line; RecordRefused names a line that is not JSON."""
    from processors.client.client import RecordRefused

    if sys.stdin.isatty():
        raise UsageError("--thread is required (or pipe JSON lines on stdin)")
    records = []
    for n, line in enumerate(sys.stdin, 1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordRefused(f"stdin line {n} is not JSON: {exc}") from None
            if not isinstance(value, dict):  # the worker's words for it are about bytes
                kind = type(value).__name__
                raise RecordRefused(f"stdin line {n}: a record is a JSON object, got {kind}")
            records.append((f"stdin line {n}", value))
    if not records:
        raise NothingToSend("nothing sent: stdin had no records (JSON lines), and no --thread")
    return records
