"""The `json` codec: UTF-8 JSON shaped byte for byte like the seed's serde output.

serde_json writes compact JSON (no spaces), keeps non-ASCII as UTF-8 and escapes control
characters as `\\n`, `\\t`, ... or `\\u00XX`, which is what `json.dumps` does with these options.
Field order is the order of the dict: the core builds records in the seed's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import DecodeError

_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


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
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"value is not valid JSON: {exc}") from None
        # Escaped lone surrogates parse in Python but cannot be written back as UTF-8; serde
        # rejects them too. Only values that contain a \\u escape need the (slower) check.
        if "\\u" in text:
            try:
                _ENCODER.encode(value).encode("utf-8")
            except UnicodeEncodeError:
                raise DecodeError("value has a lone surrogate in a \\u escape") from None
        return value
