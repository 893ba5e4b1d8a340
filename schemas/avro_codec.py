"""The `avro` codec: a schemaless Avro body in the Confluent framing, one schema per record type.

    byte 0      0x00 (magic)
    bytes 1-4   schema id, big-endian (see `schemas.resolver`)
    bytes 5-    the fastavro schemaless body

`decode` returns exactly the dict the `json` codec reads from the same record, so the rest of
the processor never knows which codec wrote it: free-form JSON fields (marked `orchestral.json`
in the schema) are carried as JSON text and parsed back; the seed's fields (and every field of
outcome and interaction records) are always present; the contract's optional extensions are
left out when null, as a JSON producer leaves them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from io import BytesIO
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer

from schemas.errors import DecodeError
from schemas.json_codec import (
    MAX_DEPTH,
    check_depth,
    fast_dumps,
    fast_loads,
    parse_finite_float,
    reject_constant,
)
from schemas.records import EVENT_FIELDS, Command, InteractionRecord, Outcome
from schemas.resolver import ParsedSchema, SchemaResolver, default_resolver

_MAGIC: Final = 0x00
_HEADER_SIZE: Final = 5
# Schema attribute of a string field that carries JSON text (ignored by other Avro readers).
_JSON_MARK: Final = "orchestral.json"
_POLICY_RECORD: Final = "PolicySpec"
# The flat input form `"concurrency": "queue", "max_queue_depth": 3` (see records._InputEvent).
_FLAT_POLICY_OPTIONS: Final = ("max_parallel", "max_queue_depth")

# The same JSON dialect as the json codec: compact, UTF-8, no NaN/Infinity either way.
_JSON_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_JSON_DECODER: Final = json.JSONDecoder(
    parse_constant=reject_constant, parse_float=parse_finite_float
)


def _always_present(name: str, fields: tuple[str, ...]) -> frozenset[str]:
    """Fields that `decode` keeps when null, per records.py; every other field is omitted then."""
    if name in EVENT_FIELDS:
        return frozenset(("type", *EVENT_FIELDS[name]))
    if name == "command":
        return frozenset(f for f, info in Command.model_fields.items() if info.is_required())
    if name == "outcome":
        return frozenset(Outcome.model_fields)
    if name == "interaction":
        return frozenset(InteractionRecord.model_fields)
    return frozenset(fields)  # a type records.py does not know: keep its shape as written


def _json_fields(schema: ParsedSchema) -> tuple[str, ...]:
    return tuple(f["name"] for f in schema["fields"] if f.get(_JSON_MARK))


def _nullable_json_fields(schema: ParsedSchema) -> frozenset[str]:
    """JSON fields typed `["null", "string"]`: absent is Avro null, not the text `null`."""
    return frozenset(
        f["name"]
        for f in schema["fields"]
        if f.get(_JSON_MARK) and isinstance(f["type"], list) and "null" in f["type"]
    )


def _policy_fields(schema: ParsedSchema) -> tuple[str, ...]:
    """Fields whose type is the (nullable) PolicySpec record."""
    found = []
    for field in schema["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if any(
            isinstance(b, dict) and str(b.get("name", "")).rsplit(".", 1)[-1] == _POLICY_RECORD
            for b in branches
        ):
            found.append(field["name"])
    return tuple(found)


class _Writer:
    """Everything `encode` needs for one record type, resolved once."""

    __slots__ = ("header", "json_fields", "name", "nullable", "policy_fields", "schema")

    def __init__(self, name: str, schema_id: int, schema: ParsedSchema) -> None:
        self.name = name
        self.header = bytes((_MAGIC,)) + schema_id.to_bytes(4, "big")
        self.schema = schema
        self.json_fields = _json_fields(schema)
        self.nullable = _nullable_json_fields(schema)
        self.policy_fields = _policy_fields(schema)

    def datum(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record as the schema holds it: JSON fields as text, policies as records."""
        datum = dict(record)  # one shallow copy: the caller's record is left alone
        for field in self.json_fields:
            if field in datum and not (datum[field] is None and field in self.nullable):
                datum[field] = self._dumps(field, datum[field])
        for field in self.policy_fields:
            if isinstance(datum.get(field), str):
                datum[field] = _policy_record(datum, field)
        return datum

    def _dumps(self, field: str, value: Any) -> str:
        fast = fast_dumps(value)
        if fast is not None:
            return fast.decode("utf-8")
        try:
            return _JSON_ENCODER.encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"`{field}` of a {self.name} record is not JSON: {exc}") from exc


def _policy_record(datum: dict[str, Any], field: str) -> dict[str, Any]:
    """A bare policy name as the PolicySpec record, folding in the flat options of `concurrency`."""
    spec: dict[str, Any] = {"name": datum[field]}
    if field == "concurrency":
        for option in _FLAT_POLICY_OPTIONS:
            if option in datum:
                spec[option] = datum.pop(option)
    return spec


class _Reader:
    """Everything `decode` needs for one schema id, resolved once."""

    __slots__ = ("json_fields", "omit_if_null", "policy_fields", "reader", "writer")

    def __init__(self, name: str, writer: ParsedSchema, latest: ParsedSchema) -> None:
        self.writer = writer
        # None skips fastavro's schema resolution: the common case, the newest schema wrote it.
        self.reader = None if latest is writer or latest == writer else latest
        fields = tuple(f["name"] for f in latest["fields"])
        self.json_fields = _json_fields(latest)
        self.policy_fields = _policy_fields(latest)
        keep = _always_present(name, fields)
        self.omit_if_null = tuple(f for f in fields if f not in keep)

    def read(self, body: BytesIO) -> dict[str, Any]:
        try:
            record = schemaless_reader(body, self.writer, self.reader)
        except EOFError as exc:  # also a negative length: "Expected -2 bytes, read 3"
            detail = f" ({exc})" if str(exc) else ""
            raise DecodeError(f"truncated Avro body{detail}") from None
        except UnicodeDecodeError as exc:
            raise DecodeError(f"Avro string is not valid UTF-8 (byte {exc.start})") from None
        except IndexError:
            raise DecodeError("Avro union branch or enum symbol index out of range") from None
        except Exception as exc:  # fastavro signals bad bytes with assorted builtin errors
            raise DecodeError(f"malformed Avro body: {type(exc).__name__}: {exc}") from None
        if not isinstance(record, dict):
            raise DecodeError("Avro body is not a record")
        return record

    def finish(self, record: dict[str, Any], max_depth: int) -> dict[str, Any]:
        """Shape the record as the json codec would have read it, in place."""
        # A JSON field sits inside its record, one level down, as in the json codec's records.
        field_depth = max_depth - 1
        for field in self.json_fields:
            if record[field] is not None:  # a nullable JSON field left null
                record[field] = _loads(field, record[field], record, field_depth)
        for field in self.policy_fields:
            spec = record[field]
            if spec is not None:
                record[field] = {k: v for k, v in spec.items() if v is not None}
        for field in self.omit_if_null:
            if record[field] is None:
                del record[field]
        return record


def _loads(field: str, text: str, record: dict[str, Any], depth: int) -> Any:
    read, fast = fast_loads(text, depth)
    if read:
        return fast
    try:
        value = _JSON_DECODER.decode(text)
        check_depth(value, text, depth)
        # Escaped lone surrogates parse but cannot be written back as UTF-8: the json codec
        # rejects them too. Only text with a \u escape needs the (slower) check.
        if "\\u" in text:
            _JSON_ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        reason = f"`{field}` has a lone surrogate in a \\u escape"
        raise DecodeError(reason, thread_id=_thread_id(record)) from None
    except (ValueError, RecursionError) as exc:
        reason = f"`{field}` is not valid JSON text: {exc}"
        raise DecodeError(reason, thread_id=_thread_id(record)) from None
    return value


def _thread_id(record: dict[str, Any]) -> str | None:
    thread_id = record.get("thread_id")
    return thread_id if isinstance(thread_id, str) and thread_id else None


class AvroCodec:
    """Avro with the Confluent framing; schemas and ids come from a `SchemaResolver`."""

    name: Final = "avro"

    def __init__(self, resolver: SchemaResolver | None = None, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth
        self._resolver = resolver if resolver is not None else default_resolver()
        # Filled on first use, so a registry-backed resolver is asked once per type / id.
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record; ValueError if it does not fit its type's schema."""
        kind = record.get("type")
        writer = self._writers.get(kind) if isinstance(kind, str) else None
        if writer is None:
            writer = self._writer_for(kind)
        datum = writer.datum(record)
        out = BytesIO()
        out.write(writer.header)
        try:
            schemaless_writer(out, writer.schema, datum, strict_allow_default=True)
        except Exception as exc:  # ValueError, or TypeError "must be string on field thread_id"
            raise ValueError(f"{kind} record does not fit its Avro schema: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode one framed value; DecodeError for anything else."""
        if len(data) < _HEADER_SIZE:
            raise DecodeError(f"Avro value of {len(data)} bytes is shorter than its header")
        if data[0] != _MAGIC:
            raise DecodeError(f"Avro value must start with 0x00, got 0x{data[0]:02x}")
        schema_id = int.from_bytes(data[1:_HEADER_SIZE], "big")
        reader = self._readers.get(schema_id)
        if reader is None:
            reader = self._reader_for(schema_id)
        body = BytesIO(data)
        body.seek(_HEADER_SIZE)
        record = reader.read(body)
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after the Avro body",
                thread_id=_thread_id(record),
            )
        return reader.finish(record, self.max_depth)

    def _writer_for(self, kind: object) -> _Writer:
        if not isinstance(kind, str):
            raise ValueError(f"record `type` must be a string, got {type(kind).__name__}")
        try:
            schema_id = self._resolver.id_for(kind)
        except KeyError:
            raise ValueError(f"no Avro schema for record type {kind!r}") from None
        schema = self._resolver.schema_for(schema_id)
        writer = self._writers[kind] = _Writer(kind, schema_id, schema)
        return writer

    def _reader_for(self, schema_id: int) -> _Reader:
        writer = self._resolver.schema_for(schema_id)  # DecodeError when unknown
        name = self._resolver.name_for(schema_id)
        reader = self._readers[schema_id] = _Reader(name, writer, self._resolver.latest(name))
        return reader
