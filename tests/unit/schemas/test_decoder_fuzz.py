"""Fuzzing the decoders (issue 5, scenario 5): no exception escapes except `DecodeError`.

The entry points are the ones the worker uses (`processors/worker/handler.py`):

- `JsonCodec.decode` and `AvroCodec.decode` (one value each),
- `InputDecoder.decode_value` / `InputDecoder.decode` (codec told by the first byte, then
  `parse_input`),
- `RecordHandler.handle(key, value, position, load)`, with a state loader backed by a dict
  (states saved and loaded through `ThreadState.to_bytes` / `from_bytes`, as the worker's table
  does), once per output codec.

Inputs: arbitrary bytes; structured-but-wrong JSON (wrong types, missing fields, unknown `type`
or `command`, huge numbers, deep nesting, invalid UTF-8, NaN/Infinity, duplicate keys, escaped
lone surrogates, non-object values); valid records encoded with either codec and then truncated,
mutated, given trailing bytes, a wrong magic byte, an unknown schema id or another type's id;
keys that are missing, wrong or non-UTF-8; null values (tombstones).

Properties: a decoder returns a value or raises `DecodeError` whose `reason` is non-empty,
single-line, bounded and UTF-8 (it becomes the DLQ's `error` header); what decodes can be
written back by the json codec and nests no deeper than serde_json allows. `RecordHandler.handle`
never raises: a record the decoder or the key check rejects goes to the DLQ unchanged (key,
value, the four headers) plus an `invalid` outcome exactly when a thread id could be read
(contract, "Bad input"); nothing is stored for it and no state is saved. A record that decodes
gets exactly one outcome and no DLQ record.

Example counts come from the `decoder-fuzz` hypothesis profile (250 per unit of a test's share:
the whole file in well under a minute on 2 cores). A long run, 40 times as many examples (about
10-15 minutes on 2 cores; `--timeout=0` lifts the suite's 300 s limit per test):

    HYPOTHESIS_PROFILE=decoder-fuzz-full .venv/bin/python -m pytest tests/unit/schemas/test_decoder_fuzz.py \
        --timeout=0

(`HYPOTHESIS_PROFILE=full` works too). The profiles are applied per test, never loaded globally,
so the rest of the suite keeps its own settings. The coverage-guided counterpart is
`fuzz/fuzz_decoders.py` (atheris, optional).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.core import Position, ThreadState
from processors.worker.handler import KafkaRecord, RecordHandler
from schemas.avro_codec import AvroCodec
from schemas.codec import InputDecoder
from schemas.errors import DecodeError
from schemas.json_codec import MAX_DEPTH, OUTPUT_DEPTH, JsonCodec
from schemas.records import INPUT_TYPES, INTERACTION_COMMANDS, Command, Event, parse_input
from schemas.resolver import default_resolver
from tests.support.strategies.byte_edits import byte_edits, mutate
from tests.support.strategies.limits import make_settings

# --- profiles -------------------------------------------------------------------------------

settings.register_profile(
    "decoder-fuzz",
    max_examples=250,
    deadline=None,  # a busy 2-core machine: time limits per example would only be flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "decoder-fuzz-full",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_PROFILE: Final = (
    "decoder-fuzz-full"
    if os.environ.get("HYPOTHESIS_PROFILE") in ("full", "decoder-fuzz-full")
    else "decoder-fuzz"
)
FUZZ: Final = settings.get_profile(_PROFILE)


def fuzz(scale: float = 1.0) -> settings:
    """The profile, with this test's share of examples (cheap tests get more)."""
    return settings(FUZZ, max_examples=max(10, int(FUZZ.max_examples * scale)))


JSON: Final = JsonCodec()
AVRO: Final = AvroCodec()
DECODER: Final = InputDecoder()
# The processor's own records nest one level deeper (an interaction record carries its event).
OUTPUT_JSON: Final = JsonCodec(OUTPUT_DEPTH)
OUTPUT_AVRO: Final = AvroCodec(max_depth=OUTPUT_DEPTH)
RESOLVER: Final = default_resolver()
SCHEMA_IDS: Final = tuple(sorted(RESOLVER.id_for(name) for name in RESOLVER.names()))
DLQ_HEADERS: Final = ("error", "source_topic", "source_partition", "source_offset")
EVENTS_TOPIC: Final = "orchestral.events"

# --- checks ---------------------------------------------------------------------------------


def assert_header_safe(reason: str) -> None:
    """A DecodeError's reason as the DLQ's `error` header gets it."""
    assert reason, "empty reason"
    assert reason == reason.strip()
    assert len(reason.splitlines()) == 1, f"multi-line reason {reason!r}"
    assert len(reason) <= 500
    reason.encode("utf-8")  # raises on a lone surrogate


def depth_of(value: Any) -> int:
    """Nesting depth of arrays/objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def decode_or_error(decode: Callable[[Any], Any], data: Any) -> tuple[Any, DecodeError | None]:
    """Run one decoder; any exception but DecodeError propagates and fails the test."""
    try:
        value = decode(data)
    except DecodeError as exc:
        assert_header_safe(exc.reason)
        assert exc.thread_id is None or (isinstance(exc.thread_id, str) and exc.thread_id)
        return None, exc
    return value, None


def check_decoded_value(value: Any) -> None:
    """What a codec decodes can be written back by the json codec, and nests as serde allows."""
    assert depth_of(value) <= MAX_DEPTH
    JSON.encode(value)  # no NaN/Infinity, no lone surrogate, no recursion error


def check_codec(decode: Callable[[bytes], Any], data: bytes) -> None:
    value, error = decode_or_error(decode, data)
    if error is None:
        check_decoded_value(value)
        # The record layer on top must fail the same way or not at all.
        decode_or_error(parse_input, value)


def check_input_decoder(data: bytes | None) -> Event | Command | None:
    """Both InputDecoder entry points agree, and raise nothing but DecodeError."""
    raw, raw_error = decode_or_error(DECODER.decode_value, data)
    record, error = decode_or_error(DECODER.decode, data)
    if raw_error is not None:
        # Both fail (the reasons may differ: one frame deeper, a text nested just under
        # Python's recursion limit fails on the limit instead of its syntax error).
        assert error is not None
        return None
    check_decoded_value(raw)
    if error is not None:  # JSON, but not an input record
        return None
    assert isinstance(record, Event | Command)
    return record


# --- strategies: valid records --------------------------------------------------------------

THREADS: Final = ("t1", "thread-ü", "T" * 80)
TIMESTAMPS: Final = (
    "2026-11-24T06:18:24Z",
    "2024-02-29T23:59:59.123456789Z",
    "2024-01-01T02:00:00+02:00",
)
COMMANDS: Final = (
    "complete", "fail", "cancel", "wait_user", "wait_event", "pause", "resume", "add_task",
    "cancel_all", "configure",
)  # fmt: skip
POLICIES: Final = ("interrupt", "reject", "parallel", "merge", "queue", "rollback", "steer")

JSON_SCALARS: Final = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES: Final = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
IDS: Final = st.sampled_from(("e1", "e2", "11111111-1111-5111-8111-111111111111")) | st.text(
    min_size=1, max_size=10
)
POLICY_SPECS: Final = st.sampled_from(POLICIES) | st.fixed_dictionaries(
    {"name": st.sampled_from(POLICIES)},
    optional={"max_parallel": st.integers(1, 5), "max_queue_depth": st.integers(1, 5)},
)


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    """One input record that parses (a `user_input` or `external_event` payload may be null)."""
    kind = draw(st.sampled_from(INPUT_TYPES))
    record: dict[str, Any] = {"type": kind, "thread_id": draw(st.sampled_from(THREADS))}
    optional: dict[str, st.SearchStrategy[Any]] = {"event_id": IDS}
    if kind == "command":
        command = draw(st.sampled_from(COMMANDS))
        record["command"] = command
        if command in INTERACTION_COMMANDS:
            record["interaction_id"] = draw(IDS)
        if command == "add_task":
            record["task_id"] = draw(IDS)
        if command == "wait_event":
            optional["kind"] = st.sampled_from(("webhook", "Email"))
        if command == "configure":
            optional |= {
                "policy": POLICY_SPECS,
                "max_interactions_per_thread": st.integers(1, 20),
                "auto_cleanup": st.booleans(),
            }
    else:
        if kind == "artifact":
            record["reference_id"] = draw(IDS)
        else:
            record["payload"] = draw(JSON_VALUES)
        if kind == "external_event":
            record["kind"] = draw(st.sampled_from(("webhook", "Email")))
        if kind == "system_trace":
            record["level"] = draw(st.sampled_from(("info", "error")))
        optional |= {
            "interaction_id": st.none() | IDS,
            "task_id": st.none() | IDS,
            "step_id": st.none() | IDS,
            "concurrency": POLICY_SPECS,
            "expected_interaction_id": IDS,
        }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=3)):
        record[name] = draw(optional[name])
    record["timestamp"] = draw(st.sampled_from(TIMESTAMPS))
    return record


# --- strategies: wrong JSON -----------------------------------------------------------------

_RAW: Final = "@@raw@@"  # a string value replaced by raw JSON text after serializing

RAW_TOKENS: Final = st.sampled_from(
    [
        b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"1e-999", b"-0", b"1" + b"0" * 5000,
        b"9" * 4300, b"123456789012345678901234567890", b"1.7976931348623157e308", b'"\\ud800"',
        b'"\\udfff\\ud800"', b'"\\u0000"', b"true", b"[]", b"{}", b"nul", b"01", b"1.", b".5",
        b'"a\nb"', b"'single'", b'{"a":1,"a":2}',
    ]
) | st.integers(1, 3000).flatmap(
    lambda n: st.sampled_from(
        [b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n, b"[" * n, b'[{"a":' * n]
    )
)  # fmt: skip
BAD_UTF8: Final = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"]
)
WRONG_VALUES: Final = (
    JSON_VALUES
    | st.integers(min_value=2**31)
    | st.integers(max_value=-(2**63))
    | st.sampled_from(["", "not a time", "2024-13-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
)


@st.composite
def wrong_json(draw: st.DrawFn) -> bytes:
    """A valid record made wrong in a few ways, as JSON bytes (often not valid JSON)."""
    record: Any = draw(valid_records())
    fields = sorted(record)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(
            st.sampled_from(
                ["drop", "retype", "raw", "unknown type", "unknown command", "extra", "not object"]
            )
        )
        if not isinstance(record, dict):
            break
        name = draw(st.sampled_from(fields))
        if how == "drop":
            record.pop(name, None)
        elif how == "retype":
            record[name] = draw(WRONG_VALUES)
        elif how == "raw":
            record[name] = _RAW
        elif how == "unknown type":
            record["type"] = draw(
                st.sampled_from(["UserInput", "", "outcome", "interaction"]) | WRONG_VALUES
            )
        elif how == "unknown command":
            record["command"] = draw(st.sampled_from(["stop", "COMPLETE"]) | WRONG_VALUES)
        elif how == "extra":
            record[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            record = draw(st.sampled_from([[record], "record", 42, None]))
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    if _RAW in text:
        data = data.replace(json.dumps(_RAW).encode(), draw(RAW_TOKENS), 1)
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.sampled_from(["duplicate", "bad utf-8", "truncate"]))
        if edit == "duplicate" and data.startswith(b"{"):
            # A key given twice: the last one wins in Python (and in serde for a struct, an error).
            name = draw(st.sampled_from(["type", "thread_id", "payload", "timestamp", "command"]))
            value = json.dumps(draw(WRONG_VALUES | st.sampled_from(THREADS))).encode()
            data = b'{"' + name.encode() + b'":' + value + b"," + data[1:]
        elif edit == "bad utf-8":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(BAD_UTF8) + data[at:]
        elif edit == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
    return data


# --- strategies: wrong Avro -----------------------------------------------------------------

EDITS: Final = byte_edits()


@st.composite
def wrong_avro(draw: st.DrawFn) -> bytes:
    """A valid record in the Avro framing, then damaged."""
    data = AVRO.encode(draw(valid_records()))
    how = draw(
        st.sampled_from(
            ["truncate", "mutate", "trailing", "wrong magic", "unknown id", "other id", "mix"]
        )
    )
    if how == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "mutate":
        return mutate(data, draw(EDITS))
    if how == "trailing":
        return data + draw(st.binary(min_size=1, max_size=8))
    if how == "wrong magic":
        return bytes([draw(st.integers(1, 255))]) + data[1:]
    if how == "unknown id":
        schema_id = draw(st.integers(0, 2**32 - 1).filter(lambda i: i not in SCHEMA_IDS))
        return b"\x00" + schema_id.to_bytes(4, "big") + data[5:]
    if how == "other id":
        return b"\x00" + draw(st.sampled_from(SCHEMA_IDS)).to_bytes(4, "big") + data[5:]
    cut = draw(st.integers(5, len(data)))
    return mutate(data[:cut], draw(EDITS))


ARBITRARY: Final = st.binary(max_size=300)
FRAMED_BODIES: Final = st.builds(
    lambda schema_id, body: b"\x00" + schema_id.to_bytes(4, "big") + body,
    st.sampled_from(SCHEMA_IDS),
    st.binary(max_size=300),
)
JSONISH_BYTES: Final = st.builds(lambda body: b"{" + body, st.binary(max_size=300))
VALID_JSON: Final = valid_records().map(JSON.encode)
VALID_AVRO: Final = valid_records().map(AVRO.encode)
ANY_VALUE: Final = st.one_of(
    ARBITRARY, JSONISH_BYTES, FRAMED_BODIES, wrong_json(), wrong_avro(), VALID_JSON, VALID_AVRO
)

# --- the codecs -----------------------------------------------------------------------------


@fuzz(3)
@given(ARBITRARY | JSONISH_BYTES)
def test_json_codec_arbitrary_bytes(data: bytes) -> None:
    check_codec(JSON.decode, data)


@fuzz(3)
@given(wrong_json())
@example(b'{"a":1e999,"b":"\\u0041"}')  # regression: ValueError escaped the surrogate check
@example(
    b'{"type":"user_input","thread_id":"t1","payload":-1e999,"timestamp":"2026-11-24T06:18:24Z"}'
)
def test_json_codec_wrong_json(data: bytes) -> None:
    check_codec(JSON.decode, data)


@fuzz(3)
@given(ARBITRARY | FRAMED_BODIES)
def test_avro_codec_arbitrary_bytes(data: bytes) -> None:
    check_codec(AVRO.decode, data)


@fuzz(3)
@given(wrong_avro())
def test_avro_codec_damaged_records(data: bytes) -> None:
    check_codec(AVRO.decode, data)


@fuzz()
@given(valid_records())
def test_valid_records_decode_the_same_from_both_codecs(record: dict[str, Any]) -> None:
    # The seeds of the damaged inputs above really are valid, whichever codec wrote them.
    from_json = check_input_decoder(JSON.encode(record))
    from_avro = check_input_decoder(AVRO.encode(record))
    assert from_json is not None and from_json == from_avro


@fuzz(3)
@given(st.none() | ANY_VALUE)
@example(None)
@example(b"")
@example(b"\x00")
@example(b"\x00\x00\x00\x00\x00")
def test_input_decoder_raises_only_decode_error(data: bytes | None) -> None:
    check_input_decoder(data)


# --- regressions (found by the fuzzing above) -----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1e999,"b":"\\u0041"}',
        b'{"a":[-1e400]}',
        b'{"type":"user_input","thread_id":"t1","payload":1e999,"timestamp":"2026-11-24T06:18:24Z"}',
    ],
)
def test_out_of_range_numbers_are_decode_errors(data: bytes) -> None:
    # 1e999 parsed to inf, which no encoder writes (serde_json: "number out of range"); with a
    # `\u` escape in the text the surrogate check let the encoder's ValueError escape.
    with pytest.raises(DecodeError, match="out of range"):
        DECODER.decode(data)


def _nested_payload(depth: int) -> dict[str, Any]:
    payload: Any = 1
    for _ in range(depth):
        payload = [payload]
    return {"type": "user_input", "thread_id": "t1", "payload": payload, "timestamp": TIMESTAMPS[0]}


def _nested_json(depth: int) -> bytes:
    # The record object is one level; its payload the rest.
    prefix = b'{"type":"user_input","thread_id":"t1","timestamp":"2026-11-24T06:18:24Z","payload":'
    return prefix + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 990, 5000])
def test_json_nested_deeper_than_serde_allows_is_a_decode_error(depth: int) -> None:
    # Python's decoder went on to ~1000 levels (serde_json stops at 128), which left no stack
    # for writing the outputs a few frames deeper: with `codec=avro`, a payload 990 deep made
    # RecordHandler.handle raise "ValueError: `payload` of a user_input record is not JSON:
    # maximum recursion depth exceeded". (Past ~1000 levels Python's own limit answers first.)
    with pytest.raises(DecodeError, match=r"nested deeper|recursion depth"):
        DECODER.decode(_nested_json(depth))


def test_json_nested_as_deep_as_serde_allows_decodes() -> None:
    assert depth_of(DECODER.decode_value(_nested_json(MAX_DEPTH))) == MAX_DEPTH


def test_avro_json_text_nested_too_deep_is_a_decode_error() -> None:
    # In Avro the payload is JSON text inside the record: it gets the record's depth less one.
    ok = AVRO.encode(_nested_payload(MAX_DEPTH - 1))
    assert depth_of(AVRO.decode(ok)) == MAX_DEPTH
    with pytest.raises(DecodeError, match="nested deeper") as caught:
        AVRO.decode(AVRO.encode(_nested_payload(MAX_DEPTH)))
    assert caught.value.thread_id == "t1"


@pytest.mark.parametrize("codec", ["json", "avro"])
@pytest.mark.parametrize(
    "value",
    [
        b'{"type":"user_input","thread_id":"t1","payload":1e999,"timestamp":"2026-11-24T06:18:24Z"}',
        _nested_json(990),
        _nested_json(MAX_DEPTH + 1),
    ],
    ids=["inf payload", "payload 990 deep", "payload too deep"],
)
def test_handler_dead_letters_what_used_to_escape(codec: str, value: bytes) -> None:
    # Before the fix: ValueError out of handle (the json/avro encoder of the outputs).
    settings_ = make_settings(codec=codec)
    handled = RecordHandler(settings_).handle(
        b"t1", value, Position(EVENTS_TOPIC, 0, 7), lambda _: None
    )
    # Not JSON as serde reads it, so no thread id was read: the DLQ only (contract, "Bad input").
    assert [r.topic for r in handled.records] == [settings_.dlq_topic]
    assert handled.records[0].value == value and handled.state is None


def _deepest_python_decodes() -> int:
    """The deepest nesting `json.loads` reads from this stack depth (was the only limit)."""
    low, high = 1, 10_000
    while low < high:
        mid = (low + high + 1) // 2
        try:
            json.loads("[" * mid + "]" * mid)
        except RecursionError:
            high = mid - 1
        else:
            low = mid
    return low


@pytest.mark.parametrize("codec", ["json", "avro"])
def test_handler_survives_payloads_as_deep_as_python_decodes(codec: str) -> None:
    # Whatever the stack depth of the caller, a payload just shallow enough for the decoder
    # inside `handle` used to leave no stack for the encoders a few frames deeper.
    settings_ = make_settings(codec=codec)
    handler = RecordHandler(settings_)
    deepest = _deepest_python_decodes()
    for depth in range(deepest - 16, deepest + 1):
        handled = handler.handle(
            b"t1", _nested_json(depth), Position(EVENTS_TOPIC, 0, depth), lambda _: None
        )
        assert [r.topic for r in handled.records] == [settings_.dlq_topic]


# --- the handler ----------------------------------------------------------------------------

KEYS: Final = st.sampled_from(["match", "match", "match", "none", "other", "binary"])


def key_for(value: bytes | None, how: str, other: bytes) -> bytes | None:
    """The key a producer would give (the thread id), or a wrong one."""
    if how == "none":
        return None
    if how == "binary":
        return other
    thread_id: Any = None
    if value:
        try:
            raw = DECODER.decode_value(value)
            thread_id = raw.get("thread_id") if isinstance(raw, dict) else None
        except DecodeError:
            pass
    key = thread_id.encode() if isinstance(thread_id, str) else b"t1"
    return key + b"-other" if how == "other" else key


def expected_error(key: bytes | None, value: bytes | None) -> DecodeError | None:
    """The oracle: what the handler must treat as a bad record."""
    try:
        record = DECODER.decode(value)
    except DecodeError as exc:
        return exc
    if key != record.thread_id.encode():
        return DecodeError("key mismatch", thread_id=record.thread_id)
    return None


class Table:
    """The worker's state table: thread id -> ThreadState bytes."""

    def __init__(self) -> None:
        self.states: dict[str, bytes] = {}

    def load(self, thread_id: str) -> ThreadState | None:
        data = self.states.get(thread_id)
        return ThreadState.from_bytes(data) if data is not None else None


def by_topic(records: list[KafkaRecord], topic: str) -> list[KafkaRecord]:
    return [r for r in records if r.topic == topic]


@pytest.mark.parametrize("codec", ["json", "avro"])
@fuzz(0.8)
@given(
    st.lists(
        st.tuples(st.none() | ANY_VALUE, KEYS, st.binary(max_size=8)),
        min_size=1,
        max_size=8,
    )
)
@example([(None, "match", b"")])
@example([(b"", "none", b"")])
@example([(_nested_json(990), "match", b"")])
@example([(JSON.encode(_nested_payload(MAX_DEPTH - 1)), "match", b"")])
@example([(AVRO.encode(_nested_payload(MAX_DEPTH - 1)), "match", b"")])
def test_record_handler_never_raises(
    codec: str, inputs: list[tuple[bytes | None, str, bytes]]
) -> None:
    settings_ = make_settings(codec=codec)
    handler = RecordHandler(settings_)
    output = OUTPUT_JSON if codec == "json" else OUTPUT_AVRO
    table = Table()
    for offset, (value, how, other) in enumerate(inputs):
        key = key_for(value, how, other)
        position = Position(EVENTS_TOPIC, 3, offset)
        error = expected_error(key, value)
        handled = handler.handle(key, value, position, table.load)  # must not raise
        dlq = by_topic(handled.records, settings_.dlq_topic)
        stored = by_topic(handled.records, settings_.store_topic)
        outcomes = [
            output.decode(r.value)
            for r in by_topic(handled.records, settings_.outcomes_topic)
            if r.value is not None
        ]
        answers = [o for o in outcomes if o["type"] == "outcome"]
        if error is not None:
            # Contract, "Bad input": the raw record to the DLQ; `invalid` when a thread id is known.
            assert len(dlq) == 1 and handled.records[0] is dlq[0]
            assert (dlq[0].key, dlq[0].value) == (key, value)
            headers = dict(dlq[0].headers or [])
            assert tuple(headers) == DLQ_HEADERS
            reason = headers["error"].decode("utf-8")
            assert_header_safe(reason)
            assert headers["source_offset"] == str(offset).encode()
            assert not stored and handled.state is None and handled.thread_id is None
            if error.thread_id is None:
                assert not outcomes
            else:
                assert len(outcomes) == 1 and answers == outcomes
                assert answers[0]["status"] == "invalid"
                assert answers[0]["thread_id"] == error.thread_id
                assert answers[0]["reason"] == reason
                assert handled.records[1].key == error.thread_id.encode()
            continue
        assert not dlq
        assert len(answers) == 1, answers
        record = DECODER.decode(value)
        if record.type in ("user_input", "external_event") and record.payload is None:
            assert not stored and answers[0]["status"] in ("invalid", "duplicate")
        for out in stored:
            assert out.value is not None
            output.decode(out.value)
        assert handled.state is not None and handled.thread_id == record.thread_id
        table.states[record.thread_id] = handled.state.to_bytes()
