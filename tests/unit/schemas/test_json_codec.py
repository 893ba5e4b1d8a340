"""The `json` codec and timestamps: byte-compatible with the seed's serde output."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import DecodeError
from schemas.json_codec import JsonCodec
from schemas.records import parse_input
from schemas.timestamps import normalize

# seed-semantics.md §2.1, with the "..." timestamps filled in.
SEED_LINES = [
    '{"type":"user_input","thread_id":"t1","interaction_id":"i1","payload":{"message":"hi"},"task_id":null,"step_id":null,"timestamp":"2026-11-24T06:18:24.144711765Z"}',
    '{"type":"artifact","thread_id":"t1","interaction_id":"i1","reference_id":"ref-1","task_id":null,"step_id":null,"timestamp":"2026-11-24T06:18:24.500Z"}',
    '{"type":"external_event","thread_id":"t1","interaction_id":null,"kind":"webhook","payload":{"a":1},"task_id":null,"step_id":null,"timestamp":"2026-11-24T06:18:24Z"}',
    '{"type":"system_trace","thread_id":"t1","interaction_id":null,"level":"info","payload":{"k":"v"},"task_id":null,"step_id":null,"timestamp":"2026-11-24T06:18:24.144711Z"}',
]


@pytest.mark.parametrize("line", SEED_LINES)
def test_seed_lines_round_trip_byte_for_byte(line: str) -> None:
    codec = JsonCodec()
    data = line.encode()
    assert codec.encode(codec.decode(data)) == data
    assert codec.encode(parse_input(codec.decode(data)).store_fields()) == data  # type: ignore[union-attr]


def test_non_ascii_and_control_characters_like_serde() -> None:
    assert (
        JsonCodec().encode({"m": 'héllo\n\x01"\\/'}) == '{"m":"héllo\\n\\u0001\\"\\\\/"}'.encode()
    )


@pytest.mark.parametrize(
    ("given_", "canonical"),
    [
        ("2026-11-24T06:18:24.144711765Z", "2026-11-24T06:18:24.144711765Z"),
        ("2026-11-24T06:18:24.5Z", "2026-11-24T06:18:24.500Z"),
        ("2026-11-24T06:18:24.000Z", "2026-11-24T06:18:24Z"),
        ("2026-11-24T06:18:24.120000Z", "2026-11-24T06:18:24.120Z"),
        ("2026-11-24T06:18:24.1234Z", "2026-11-24T06:18:24.123400Z"),
        ("2026-11-24T06:18:24.1234567891Z", "2026-11-24T06:18:24.123456789Z"),
        ("2026-11-24T08:00:00+08:00", "2026-11-24T00:00:00Z"),
        ("2026-01-01T02:00:00+08:00", "2025-12-31T18:00:00Z"),
        ("2026-11-24t06:18:24z", "2026-11-24T06:18:24Z"),
        ("2026-11-24T06:18:24-00:30", "2026-11-24T06:48:24Z"),
    ],
)
def test_timestamps_normalize_to_utc_with_the_seed_fraction_rule(
    given_: str, canonical: str
) -> None:
    assert normalize(given_) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        1764000000,
        "2026-11-24",
        "2026-13-01T00:00:00Z",
        "yesterday",
        None,
        "2026-11-24T06:18:24+25:00",
    ],
)
def test_bad_timestamps_are_decode_errors(bad: object) -> None:
    with pytest.raises(DecodeError):
        normalize(bad)


@given(st.datetimes(), st.integers(0, 999_999_999))
def test_normalize_is_idempotent(moment: datetime, nanos: int) -> None:
    m = moment
    text = f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{nanos:09d}Z"
    once = normalize(text)
    assert normalize(once) == once


BASE = b'{"type":"user_input","thread_id":"t1","payload":{},"timestamp":"2026-11-24T06:18:24Z"}'


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (BASE[:-7], "not valid JSON"),
        (b'{"thread_id":"t1"}', "missing field `type`"),
        (BASE.replace(b"user_input", b"UserInput"), "unknown variant `UserInput`"),
        (BASE.replace(b'"payload":{},', b""), "missing field `payload`"),
        (BASE.replace(b'"t1"', b"7"), "invalid `thread_id`"),
        (BASE.replace(b"t1", b"t\xff"), "not valid UTF-8"),
        (b'{"a":NaN}', "not valid JSON"),
        (b'{"a":"\\ud800"}', "lone surrogate"),
        (b"[1,2]", "must be a JSON object"),
        (BASE.replace(b"2026-11-24T06:18:24Z", b"1764000000"), "invalid `timestamp`"),
    ],
)
def test_malformed_inputs_raise_the_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        parse_input(JsonCodec().decode(data))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        parse_input(JsonCodec().decode(data))


@given(
    st.sampled_from(
        ["", ".000", ".500", ".120", ".123000", ".123400", ".000000", ".123456000", ".123456789"]
    ),
    st.sampled_from(
        ["2026-11-24T06:18:", "2024-02-29T23:59:", "2026-02-29T23:59:", "2026-13-01T00:00:"]
    ),
    st.sampled_from(["00", "59", "60", "99"]),
)
def test_normalize_agrees_with_the_full_parse_whatever_was_checked_before(
    fraction: str, minute: str, second: str
) -> None:
    """The shortcuts (the redundant-fraction test, the minutes already checked) decide as the
    full parse does, cold and with the minute known."""
    from schemas import timestamps

    def result(call: Any, value: str) -> object:
        try:
            return call(value)
        except DecodeError as exc:
            return exc.reason

    value = f"{minute}{second}{fraction}Z"
    timestamps._VALID_MINUTES.clear()
    assert result(normalize, value) == result(timestamps._reformat, value)
    result(normalize, f"{minute}00Z")  # its minute checked, if valid
    assert result(normalize, value) == result(timestamps._reformat, value)
