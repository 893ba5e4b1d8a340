"""Which cluster, and which incarnation of each topic, the worker is talking to.

Local state is only valid for the topics it was built from (contract, "Local state that does not
belong to the topic"): a wiped broker or a deleted and recreated topic starts its offsets at 0
again, and a kept data dir would take the new records for replays. Kafka names each cluster and
each topic incarnation with an id: the cluster id (Metadata v2+) and the topic id (Metadata v10+,
KIP-516). aiokafka 0.14 speaks Metadata up to v5 only, so it knows neither: the request is sent
by `faust_compat.cluster_and_topic_ids`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from config.settings import Settings
from processors.kafka.topics import connect_admin, create_missing_topics
from processors.worker import faust_compat
from processors.worker.faust_compat import NO_TOPIC_ID


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
    return ClusterIdentity(*await faust_compat.cluster_and_topic_ids(admin, topics))


@dataclass(frozen=True)
class Cluster:
    """What the worker learns before it starts: who the cluster is, how the input is split."""

    identity: ClusterIdentity
    events_partitions: int


async def prepare_cluster(settings: Settings) -> Cluster:
    """Create the missing topics, then describe them."""
    admin = await connect_admin(settings)
    try:
        counts = await create_missing_topics(admin, settings)
        topics = [settings.events_topic, settings.changelog_topic]
        return Cluster(await describe(admin, topics), counts[settings.events_topic])
    finally:
        await admin.close()


async def current_identity(settings: Settings) -> ClusterIdentity:
    admin = await connect_admin(settings)
    try:
        return await describe(admin, [settings.events_topic, settings.changelog_topic])
    finally:
        await admin.close()
