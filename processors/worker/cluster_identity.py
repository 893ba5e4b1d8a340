"""Which cluster, and which incarnation of each topic, the worker is talking to.

Local state is only valid for the topics it was built from (contract, "Local state that does not
belong to the topic"): a wiped broker or a deleted and recreated topic starts its offsets at 0
again, and a kept data dir would take the new records for replays. Kafka names each cluster and
each topic incarnation with an id: the cluster id (Metadata v2+) and the topic id (Metadata v10+,
KIP-516). aiokafka 0.14 speaks Metadata up to v5 only, so it knows neither; this module sends
Metadata v12 itself, over aiokafka's connection of an admin client (`_send_request`, a private
method: pinned with aiokafka 0.14.0).
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


class _Uuid(AbstractType[str]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: str) -> bytes:
        return uuid.UUID(value).bytes

    @classmethod
    def decode(cls, data: BytesIO) -> str:
        return str(uuid.UUID(bytes=data.read(16)))


class _MetadataResponse_v12(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _MetadataRequest_v12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponse_v12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(
                ("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)
            ),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


_Struct: TypeAlias = _MetadataRequest_v12


class _MetadataRequest(Request[_Struct]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        return request_struct_class([(NO_TOPIC_ID, t, {}) for t in self._topics], False, False, {})


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    cluster_id: str
    topic_ids: dict[str, str]  # topic name -> its id; absent: the topic does not exist

    def epoch(self, topic: str) -> int:
        """A small number naming the topic's incarnation, the same on every worker: stamped on
        the thread states built from it, so a state from an older incarnation is recognised."""
        return zlib.crc32(self.topic_ids.get(topic, NO_TOPIC_ID).encode()) & 0x7FFFFFFF

    def differences(self, recorded: ClusterIdentity) -> list[str]:
        """What changed since `recorded`, in words (empty: the same cluster and topics)."""
        changes = []
        if recorded.cluster_id != self.cluster_id:
            changes.append(f"cluster id {recorded.cluster_id} -> {self.cluster_id}")
        for topic, was in recorded.topic_ids.items():
            now = self.topic_ids.get(topic)
            if now != was:
                changes.append(f"topic {topic} id {was} -> {now or 'deleted'}")
        return changes

    def to_json(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "topic_ids": dict(self.topic_ids)}

    @classmethod
    def from_json(cls, data: Any) -> ClusterIdentity:
        return cls(str(data["cluster_id"]), {str(k): str(v) for k, v in data["topic_ids"].items()})


async def describe(admin: AIOKafkaAdminClient, topics: list[str]) -> ClusterIdentity:
    """The cluster id and the ids of those of `topics` that exist."""
    response: Any = await admin._send_request(_MetadataRequest(topics))
    ids = {
        name: topic_id
        for error_code, name, topic_id, *_ in response.topics
        if error_code == 0 and topic_id != NO_TOPIC_ID
    }
    return ClusterIdentity(response.cluster_id, ids)
