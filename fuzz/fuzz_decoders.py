"""Coverage-guided fuzzing of the decoders with atheris (libFuzzer): optional, not a test.

The hypothesis counterpart, run with the unit tests, is `tests/unit/schemas/test_decoder_fuzz.py`.
This harness feeds libFuzzer's mutated bytes to the same entry points the worker uses and fails
(writes a `crash-*` file and exits non-zero) when anything but `DecodeError` escapes a decoder,
when a decoded value cannot be written back as JSON, or when `RecordHandler.handle` raises at all.

    .venv/bin/pip install atheris     # a wheel for CPython 3.11 on x86_64 Linux; not a dependency
    mkdir -p var/fuzz-corpus
    .venv/bin/python fuzz/fuzz_decoders.py --write-seeds var/fuzz-corpus
    .venv/bin/python fuzz/fuzz_decoders.py var/fuzz-corpus -dict=fuzz/decoders.dict \
        -max_total_time=300 -rss_limit_mb=4096

Any libFuzzer flag works after the corpus directory (`-jobs=2 -workers=2`, `-runs=N`, ...); to
replay a crash: `.venv/bin/python fuzz/fuzz_decoders.py crash-<sha1>`.

Input layout: byte 0 picks the target (low 3 bits) and the key (next 2 bits, for the handler);
the rest is the Kafka value. A value of exactly b"\\xff" after the selector stands for a null
value (a tombstone).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

with atheris.instrument_imports(include=["schemas", "processors"]):
    from processors.core import Position, ThreadState
    from processors.worker.handler import RecordHandler
    from schemas.avro_codec import AvroCodec
    from schemas.codec import InputDecoder
    from schemas.errors import DecodeError
    from schemas.json_codec import JsonCodec

from config.settings import Settings

JSON = JsonCodec()
AVRO = AvroCodec()
DECODER = InputDecoder()
HANDLERS = {
    name: RecordHandler(Settings(events_topic="orchestral.events", codec=name))
    for name in ("json", "avro")
}
POSITION = Position("orchestral.events", 0, 42)
_NULL = b"\xff"


def _check_reason(exc: DecodeError) -> None:
    reason = exc.reason
    if not reason or len(reason.splitlines()) != 1 or len(reason) > 500:
        raise AssertionError(f"reason not header-safe: {reason!r}")
    reason.encode("utf-8")


def _decode(decode: Any, data: Any) -> Any:
    try:
        value = decode(data)
    except DecodeError as exc:
        _check_reason(exc)
        return None
    JSON.encode(value)  # what decodes can be written back (no inf, no lone surrogate)
    return value


def _key(value: bytes | None, how: int) -> bytes | None:
    if how == 0:
        return None
    thread_id: Any = None
    try:
        raw = DECODER.decode_value(value)
        thread_id = raw.get("thread_id") if isinstance(raw, dict) else None
    except DecodeError:
        pass
    key = thread_id.encode() if isinstance(thread_id, str) else b"t1"
    return key + b"-other" if how == 1 else key


def _load(thread_id: str) -> ThreadState | None:
    return None


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    value: bytes | None = None if body == _NULL else body
    target = selector & 0x07
    if target == 0:
        _decode(JSON.decode, body)
    elif target == 1:
        _decode(AVRO.decode, body)
    elif target in (2, 3):
        _decode(DECODER.decode_value, value)
        _decode(lambda v: DECODER.decode(v).model_dump(), value)
    else:
        handler = HANDLERS["json" if target in (4, 5) else "avro"]
        key = _key(value, (selector >> 3) & 0x03)
        handled = handler.handle(key, value, POSITION, _load)  # must never raise
        if handled.state is not None:
            handled.state.to_bytes()


def write_seeds(directory: Path) -> None:
    """Valid records of every type in both codecs, for every target, as the starting corpus."""
    ts = "2026-11-24T06:18:24Z"
    records: list[dict[str, Any]] = [
        {"type": "user_input", "thread_id": "t1", "payload": {"message": "hi"}, "timestamp": ts},
        {"type": "user_input", "thread_id": "t1", "payload": None, "timestamp": ts,
         "event_id": "e1", "concurrency": {"name": "queue", "max_queue_depth": 3}},
        {"type": "external_event", "thread_id": "t1", "kind": "webhook", "payload": [1, 2.5],
         "timestamp": "2024-01-01T02:00:00.123456789+02:00"},
        {"type": "assistant_output", "thread_id": "t1", "interaction_id": "I",
         "payload": {"a": "\u00e9"}, "timestamp": ts},
        {"type": "artifact", "thread_id": "t1", "interaction_id": "I", "reference_id": "r",
         "timestamp": ts},
        {"type": "system_trace", "thread_id": "t1", "level": "info", "payload": "x",
         "timestamp": ts},
        {"type": "command", "command": "configure", "thread_id": "t1", "timestamp": ts,
         "policy": "parallel", "max_interactions_per_thread": 3, "auto_cleanup": False},
        {"type": "command", "command": "add_task", "thread_id": "t1", "interaction_id": "I",
         "task_id": "k", "timestamp": ts},
    ]  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, record in enumerate(records):
        for codec in (JSON, AVRO):
            value = codec.encode(record)
            for selector in (0, 1, 2, 4 | 0x10, 6 | 0x10, 4 | 0x08):
                (directory / f"seed-{i}-{codec.name}-{selector}").write_bytes(
                    bytes((selector,)) + value
                )
                count += 1
    print(f"wrote {count} seeds to {directory}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
