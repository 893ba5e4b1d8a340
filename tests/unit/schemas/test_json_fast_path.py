"""The msgspec fast path of the json codec reads and writes exactly what `json` does."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.errors import DecodeError
from schemas.json_codec import _ENCODER, MAX_DEPTH, _exact_loads, dumps, loads


def exact_dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("utf-8")


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except DecodeError as exc:
        return "decode error", exc.reason
    except Exception as exc:
        return "error", type(exc)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize(
    "value",
    [
        1e16,
        1e-05,
        2.5e-07,
        -0.0,
        1.7976931348623157e308,
        5e-324,
        float("nan"),
        float("inf"),
        2**64,
        -(2**63) - 1,
        10**40,
        "\ud800",
        {"a": "\udc00"},
        (1, 2),
        {1: "int key"},
        {True: "bool key"},
        {None: "null key"},
        {1.5: "float key"},
        b"bytes",
        {"set": {1}},
        'héllo\n\x01"\\/\u2028\x7f',
    ],
)
def test_dumps_writes_what_json_writes_or_raises_what_it_raises(value: Any) -> None:
    assert outcome(dumps, value) == outcome(exact_dumps, value)


@settings(max_examples=500)
@given(JSON_VALUES)
def test_dumps_of_any_json_value_is_jsons(value: Any) -> None:
    assert outcome(dumps, value) == outcome(exact_dumps, value)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2,"b":3}',
        b"123456789012345678901234567890",
        b"1" * 4301,
        b"1e400",
        b"1" * 400 + b".5",
        b"-0",
        b"-0.0",
        b"1E5",
        b"1.",
        b"01",
        b"NaN",
        b"-Infinity",
        b'"\\ud800"',
        b'"\\udc00\\ud800"',
        b'"\\uD834\\uDD1E"',
        b'"a\x01"',
        b'"\xff"',
        b"\xef\xbb\xbf{}",
        b" {} ",
        b"{}\x0b",
        b"[1,]",
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b"[" * 5000 + b"]" * 5000,
        b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',
        b"",
        b"tru",
    ],
)
def test_loads_reads_what_json_reads_with_the_same_errors(data: bytes) -> None:
    fast, exact = outcome(loads, data), outcome(_exact_loads, data, MAX_DEPTH)
    assert fast[0] == exact[0]
    assert same(fast[1], exact[1]) if fast[0] == "ok" else fast == exact


@settings(max_examples=500)
@given(JSON_VALUES)
def test_loads_of_any_json_text_is_jsons(value: Any) -> None:
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    for text in (data, json.dumps(value).encode()):  # \\u escapes too
        fast, exact = outcome(loads, text), outcome(_exact_loads, text, MAX_DEPTH)
        assert fast[0] == exact[0]
        assert same(fast[1], exact[1]) if fast[0] == "ok" else fast == exact


@given(st.binary(max_size=60))
def test_loads_of_any_bytes_is_jsons(data: bytes) -> None:
    fast, exact = outcome(loads, data), outcome(_exact_loads, data, MAX_DEPTH)
    assert fast[0] == exact[0]
    assert same(fast[1], exact[1]) if fast[0] == "ok" else fast == exact
