"""Value codecs and the input decoder that tells them apart.

The processor writes one codec, chosen by configuration, and reads both: a value starting
with `0x00` is Avro (Confluent framing), one starting with `{` is JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, TypeAlias

from schemas.avro_codec import AvroCodec
from schemas.errors import DecodeError
from schemas.json_codec import MAX_DEPTH, OUTPUT_DEPTH, JsonCodec
from schemas.records import Command, Event, parse_input

CodecName: TypeAlias = Literal["json", "avro"]


class Codec(Protocol):
    @property
    def name(self) -> str: ...

    def encode(self, record: Mapping[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class InputDecoder:
    """Bytes of an input record -> a validated record, whatever codec wrote them.

    `max_depth`: how deep a value may nest (`output_decoder` reads the processor's own records).
    """

    def __init__(self, avro: AvroCodec | None = None, *, max_depth: int = MAX_DEPTH) -> None:
        self._json = JsonCodec(max_depth)
        self._avro = avro or AvroCodec(max_depth=max_depth)

    def decode_value(self, data: bytes | None) -> Any:
        if not data:
            raise DecodeError("empty value" if data is not None else "null value (tombstone)")
        first = data[0]
        if first == 0x00:
            return self._avro.decode(data)
        if first == 0x7B:  # "{"
            return self._json.decode(data)
        raise DecodeError(f"unknown encoding: first byte 0x{first:02x} is neither 0x00 nor '{{'")

    def decode(self, data: bytes | None) -> Event | Command:
        return parse_input(self.decode_value(data))


def output_decoder() -> InputDecoder:
    """A decoder of the store, outcome and DLQ records the processor writes."""
    return InputDecoder(max_depth=OUTPUT_DEPTH)


def make_codec(name: CodecName, avro: AvroCodec | None = None) -> Codec:
    if name == "json":
        return JsonCodec()
    return avro or AvroCodec()
