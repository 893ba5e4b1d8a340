"""The `json` codec: UTF-8 JSON shaped byte for byte like the seed's serde output.

serde_json writes compact JSON (no spaces), keeps non-ASCII as UTF-8 and escapes control
characters as `\\n`, `\\t`, ... or `\\u00XX`, which is what `json.dumps` does with these options.
Field order is the order of the dict: the core builds records in the seed's order.

Speed: msgspec reads and writes the common case about 5x faster than `json`, and only where its
bytes are provably the same. It writes strings, ints, bools and null exactly as `json` does, but
floats differently (`1e16` where `json` writes `1e+16`, NaN as null), so a value with any float,
or any type beyond the JSON ones, is written by `json`. It reads exactly what `json` reads except
lone surrogates (which it rejects): whatever it refuses is read again by `json`, which gives the
same value or the same error as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from schemas.errors import DecodeError

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# serde_json's default recursion limit: 127 nested arrays/objects read, the 128th is an error.
# Python's decoder would go on to ~1000 levels, so deep that writing the outputs overflows the
# stack; the limit counts the whole value (for a record, the record object is the first level).
MAX_DEPTH: Final = 127
# What the processor writes may nest one level deeper: an `interaction` record carries its
# stored event (whose payload may nest as deep as an input allows) one level down.
OUTPUT_DEPTH: Final = MAX_DEPTH + 1


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_finite_float(text: str) -> float:
    """`1e999` would parse as inf, which no encoder writes; serde_json rejects it too."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def check_depth(value: Any, text: str | bytes, limit: int = MAX_DEPTH) -> None:
    """ValueError if `value` (decoded from `text`) nests arrays/objects deeper than `limit`."""
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return
    elif text.count("[") + text.count("{") <= limit:
        return  # cannot be deeper: the common case costs two C-speed counts
    # Level by level, containers only: no recursion, and scalars are only type-checked.
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(limit):
        if not level:
            return
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend([c for c in children if isinstance(c, dict | list)])
        level = below
    if level:
        raise ValueError(f"nested deeper than {limit} levels")


_DECODER: Final = json.JSONDecoder(parse_constant=reject_constant, parse_float=parse_finite_float)
_FAST_DECODER: Final = msgspec.json.Decoder(float_hook=parse_finite_float)
_FAST_ENCODER: Final = msgspec.json.Encoder()
_SCALARS: Final = frozenset({str, int, bool, type(None)})
# Deeper than anything the decoders let in (OUTPUT_DEPTH): left to `json`, which also reports a
# circular reference as it always did.
_PLAIN_DEPTH: Final = 256


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, byte for byte what `_ENCODER` writes."""
    fast = fast_dumps(value)
    return fast if fast is not None else _ENCODER.encode(value).encode("utf-8")


def fast_dumps(value: Any) -> bytes | None:
    """`dumps(value)` by msgspec when that is exact, else None (`json` must write it)."""
    if _plain(value, 0):
        try:
            return _FAST_ENCODER.encode(value)
        except Exception:  # e.g. a lone surrogate: `json` raises what it always raised
            pass
    return None


def _plain(value: Any, depth: int) -> bool:
    """Only str keys, and str, int, bool, None, list and dict values (exact types, no float):
    what msgspec writes exactly as `json` does."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth > _PLAIN_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (type(item) in _SCALARS or _plain(item, depth + 1)):
                return False
        return True
    if kind is list:
        return all(type(item) in _SCALARS or _plain(item, depth + 1) for item in value)
    return False


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strict UTF-8 JSON -> value; DecodeError for anything else (the seed's reasons)."""
    read, value = fast_loads(data, max_depth)
    return value if read else _exact_loads(data, max_depth)


def fast_loads(data: bytes | str, max_depth: int) -> tuple[bool, Any]:
    """(True, value) when msgspec reads `data` within `max_depth`; (False, None) for anything
    it refuses, which `json` must then read (the same value, or its own error)."""
    try:
        value = _FAST_DECODER.decode(data)
        check_depth(value, data, max_depth)
    except Exception:
        return False, None
    return True, value  # no lone surrogate: msgspec refuses them


def _exact_loads(data: bytes, max_depth: int) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"value is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = _DECODER.decode(text)
        check_depth(value, text, max_depth)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"value is not valid JSON: {exc}") from None
    # Escaped lone surrogates parse in Python but cannot be written back as UTF-8; serde
    # rejects them too. Only values that contain a \\u escape need the (slower) check.
    if "\\u" in text:
        try:
            _ENCODER.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            raise DecodeError("value has a lone surrogate in a \\u escape") from None
        except (ValueError, RecursionError) as exc:  # not expected after the checks above
            raise DecodeError(f"value cannot be written back as JSON: {exc}") from None
    return value


class JsonCodec:
    name: Final = "json"

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return dumps(record)

    def decode(self, data: bytes) -> Any:
        """Decode one value; DecodeError for anything that is not strict UTF-8 JSON."""
        return loads(data, self.max_depth)
