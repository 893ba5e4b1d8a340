"""Talking to the cluster before the worker starts: is it there, and do our topics exist."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from config.settings import Settings
from processors.kafka.connection import kafka_kwargs, start_client
from schemas.errors import BrokerUnreachable as BrokerUnreachable  # re-exported (worker.py)

log = logging.getLogger("orchestral.admin")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    p = settings.partitions
    # Outputs are bigger than their input (a store record wraps its payload, a DLQ record adds
    # headers to the raw input): the output topics accept more than the broker's default.
    large = {"max.message.bytes": str(settings.max_output_bytes)}
    return [
        TopicSpec(settings.events_topic, p, {}),
        # The store is the event store: it is kept forever and replayed.
        TopicSpec(
            settings.store_topic, p, {"retention.ms": "-1", "retention.bytes": "-1", **large}
        ),
        TopicSpec(settings.outcomes_topic, p, large),
        # Same partition count as the input, so a DLQ record can stay on its partition.
        TopicSpec(settings.dlq_topic, p, large),
        # Created here rather than by faust, so its id is known before faust starts (the local
        # state's identity, processors/worker/local_state.py). As faust would create it: compacted.
        TopicSpec(settings.changelog_topic, p, {"cleanup.policy": "compact", **large}),
    ]


async def connect_admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client connected within `connect_timeout`, else BrokerUnreachable; at once
    BrokerSecurityError (AuthenticationFailed, TLSHandshakeFailed) when the cluster refuses our
    credentials or certificates, since waiting cannot fix those."""
    deadline = time.monotonic() + settings.connect_timeout
    last_error: BrokerUnreachable | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(
            **kafka_kwargs(settings),
            request_timeout_ms=max(1000, int(settings.connect_timeout * 1000)),
        )
        try:
            await start_client(admin, settings, timeout=deadline - time.monotonic())
            return admin
        except BrokerUnreachable as exc:  # start_client closed it
            last_error = exc
            await asyncio.sleep(0.5)
    raise last_error or BrokerUnreachable(
        f"cannot reach Kafka at {settings.bootstrap_servers} within {settings.connect_timeout:g}s"
        " (timeout); is the broker running? Start a local one with `orchestral-stream broker"
        " start`."
    )


async def ensure_topics(settings: Settings) -> None:
    """Create missing topics; warn when an existing one has another partition count."""
    admin = await connect_admin(settings)
    try:
        await create_missing_topics(admin, settings)
    finally:
        await admin.close()


async def create_missing_topics(admin: AIOKafkaAdminClient, settings: Settings) -> dict[str, int]:
    """Create the topics that do not exist; returns every topic's partition count."""
    existing = await _partition_counts(admin)
    missing = [s for s in topic_specs(settings) if s.name not in existing]
    for spec in topic_specs(settings):
        count = existing.get(spec.name)
        if count is not None and count != spec.partitions:
            log.warning(
                "topic %s has %d partitions, settings say %d: keeping %d",
                spec.name, count, spec.partitions, count,
            )  # fmt: skip
    if missing:
        new = [
            NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=s.config)
            for s in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another worker was first
            await admin.create_topics(new)
        log.info("created topics %s", ", ".join(s.name for s in missing))
    return {**{s.name: s.partitions for s in missing}, **existing}


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    metadata = await admin.describe_topics(await admin.list_topics())
    return {t["topic"]: len(t["partitions"]) for t in metadata if not t.get("error_code")}
