"""Avro schemas by record type and by schema id: the codec asks a resolver, never a file.

`LocalSchemaResolver` serves the `.avsc` files shipped in `schemas/avro/`. Its ids are derived
from each schema's Parsing Canonical Form, so every process on any machine agrees on them without
a registry. A Confluent Schema Registry client can implement the same `SchemaResolver` protocol
later (`id_for` = look up or register under the subject, `schema_for`/`name_for` =
`GET /schemas/ids/{id}`, `latest` = `GET /subjects/{subject}/versions/latest`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final, Protocol, TypeAlias

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from schemas.errors import ConfigurationError, DecodeError

# A schema as fastavro's `parse_schema` returns it (our schemas are all records).
ParsedSchema: TypeAlias = dict[str, Any]

# `user_input.avsc` is the current schema of `user_input`; `user_input.v1.avsc`,
# `user_input.v2.avsc`, ... are retired versions, kept so that old records stay readable.
_FILE_NAME: Final = re.compile(r"(?P<name>[a-z][a-z0-9_]*)(?:\.v(?P<version>\d+))?\.avsc\Z")


class SchemaResolver(Protocol):
    """Where the Avro codec finds writer schemas (by id) and reader schemas (by record type)."""

    def id_for(self, name: str) -> int:
        """The id to write records of type `name` with: its newest schema's. KeyError if unknown."""
        ...

    def schema_for(self, schema_id: int) -> ParsedSchema:
        """The (parsed) schema a record with this id was written with. DecodeError if unknown."""
        ...

    def name_for(self, schema_id: int) -> str:
        """The record type (`user_input`, `outcome`, ...) of the schema with this id.

        DecodeError if unknown.
        """
        ...

    def latest(self, name: str) -> ParsedSchema:
        """The newest schema of type `name`, the reader schema for all its versions. KeyError if
        unknown."""
        ...


def schema_id(schema: Mapping[str, Any]) -> int:
    """The deterministic id of a schema: the first 4 bytes of the SHA-256 of its Parsing
    Canonical Form, big-endian, masked to a positive 31-bit int.

    The canonical form drops docs, defaults and custom attributes, so two versions that differ
    only in those share an id, which is safe: the canonical form alone fixes the binary layout.
    """
    return _id_of_canonical(to_parsing_canonical_form(dict(schema)))


def _id_of_canonical(canonical: str) -> int:
    digest = hashlib.sha256(canonical.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


def load_schemas(directory: Traversable | None = None) -> dict[str, list[dict[str, Any]]]:
    """The raw `.avsc` schemas of a directory (default: the shipped `schemas/avro/`), per record
    type, oldest version first."""
    if directory is None:
        directory = resources.files("schemas").joinpath("avro")
    found: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise ConfigurationError(f"schema file name {entry.name!r} is not TYPE[.vN].avsc")
        # The unversioned file is the current schema: it sorts after every retired version.
        version = float(match["version"]) if match["version"] else float("inf")
        schema = json.loads(entry.read_text(encoding="utf-8"))
        found.setdefault(match["name"], []).append((version, schema))
    return {name: [s for _, s in sorted(vs, key=lambda v: v[0])] for name, vs in found.items()}


class LocalSchemaResolver:
    """Schemas held in memory, each parsed once, with ids from `schema_id`."""

    def __init__(self, versions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> None:
        """`versions`: per record type, its schemas oldest first; the last one is written.
        Default: the schemas shipped in `schemas/avro/`."""
        self._by_id: dict[int, tuple[str, ParsedSchema]] = {}
        self._latest: dict[str, tuple[int, ParsedSchema]] = {}
        canonical: dict[int, str] = {}
        for name, schemas in (load_schemas() if versions is None else versions).items():
            if not schemas:
                raise ConfigurationError(f"no Avro schema for record type {name!r}")
            added = [self._add(name, raw, canonical) for raw in schemas]
            self._latest[name] = added[-1]

    def _add(
        self, name: str, raw: Mapping[str, Any], canonical: dict[int, str]
    ) -> tuple[int, ParsedSchema]:
        parsed = parse_schema(dict(raw))
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise ConfigurationError(f"Avro schema of {name!r} must be a record")
        form = to_parsing_canonical_form(parsed)
        sid = _id_of_canonical(form)
        known = self._by_id.get(sid)
        if known is not None and (known[0] != name or canonical[sid] != form):
            # 31-bit hashes of a few dozen schemas: astronomically unlikely, but never silent.
            raise ConfigurationError(f"schema id {sid} collides: {known[0]!r} and {name!r}")
        canonical[sid] = form
        self._by_id[sid] = (name, parsed)
        return sid, parsed

    def id_for(self, name: str) -> int:
        return self._latest[name][0]

    def schema_for(self, schema_id: int) -> ParsedSchema:
        return self._lookup(schema_id)[1]

    def name_for(self, schema_id: int) -> str:
        return self._lookup(schema_id)[0]

    def latest(self, name: str) -> ParsedSchema:
        return self._latest[name][1]

    def names(self) -> tuple[str, ...]:
        """The record types this resolver has schemas for."""
        return tuple(self._latest)

    def _lookup(self, schema_id: int) -> tuple[str, ParsedSchema]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown Avro schema id {schema_id}") from None


@cache
def default_resolver() -> LocalSchemaResolver:
    """The shipped schemas, parsed once per process however many codecs are built."""
    return LocalSchemaResolver()
