"""The `json` codec: UTF-8 JSON shaped byte for byte like the seed's serde output.

serde_json writes compact JSON (no spaces), keeps non-ASCII as UTF-8 and escapes control
characters as `\\n`, `\\t`, ... or `\\u00XX`, which is what `json.dumps` does with these options.
Field order is the order of the dict: the core builds records in the seed's order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import DecodeError

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# serde_json's default recursion limit: 127 nested arrays/objects read, the 128th is an error.
# Python's decoder would go on to ~1000 levels, so deep that writing the outputs overflows the
# stack; the limit counts the whole value (for a record, the record object is the first level).
MAX_DEPTH: Final = 127


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_finite_float(text: str) -> float:
    """`1e999` would parse as inf, which no encoder writes; serde_json rejects it too."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def check_depth(value: Any, text: str, limit: int = MAX_DEPTH) -> None:
    """ValueError if `value` (decoded from `text`) nests arrays/objects deeper than `limit`."""
    if text.count("[") + text.count("{") <= limit:
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


class JsonCodec:
    name: Final = "json"

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return _ENCODER.encode(record).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        """Decode one value; DecodeError for anything that is not strict UTF-8 JSON."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"value is not valid UTF-8 (byte {exc.start})") from None
        try:
            value = _DECODER.decode(text)
            check_depth(value, text)
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
