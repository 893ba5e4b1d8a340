"""Every touch of faust's, mode's and aiokafka's private parts, in one place, checked at start.

The worker relies on a few names that are not on faust's `...T` protocols nor in aiokafka's
`__all__`: to work around defects (each named where it is used, with its upstream issue) or to
skip layers that cost more than the work (RocksDB read per record). They were measured with the
versions in `PINNED` only, and a release may rename them; two would then fail silently (a
missing `_db_for_partition` would dead-letter every record, a missing `_committed_offset` would
stop trimming the replay buffer). So `check()` runs before the worker starts: the installed
versions must be the pinned ones and every name used here must exist, or the worker refuses to
start with the reason. `ORCHESTRAL_ALLOW_UNPINNED=1` starts it anyway (with a warning), to try
a new release: then run `make reliability` before trusting it (README, "Upgrading faust").
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable
from io import BytesIO
from typing import Any, Final

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

from processors.worker.output_batch import Target
from schemas.errors import ConfigurationError

log = logging.getLogger("orchestral.worker")

# The versions every workaround was measured with (`make reliability`, `make bench`).
PINNED: Final = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
ALLOW_UNPINNED: Final = "ORCHESTRAL_ALLOW_UNPINNED"


def _used() -> list[tuple[type, str, str]]:
    """(class, name, how it is defined): "attr" a class attribute or method, "init" an
    instance attribute its __init__ assigns. faust is imported here, not at the top: the worker
    imports it once its event loop is set."""
    import faust.streams
    from faust.stores.rocksdb import Store as RocksDBStore
    from faust.tables.recovery import Recovery
    from faust.transport.drivers import aiokafka as faust_aiokafka
    from mode.worker import Worker as ModeWorker

    return [
        (RocksDBStore, "_db_for_partition", "attr"),
        (RocksDBStore, "offset_key", "attr"),
        (Recovery, "_build_offsets", "attr"),
        (faust_aiokafka.Consumer, "_committed_offset", "init"),
        (faust_aiokafka.Consumer, "_thread", "init"),
        (faust_aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", "attr"),
        (faust_aiokafka.Producer, "_ensure_producer", "attr"),
        (faust_aiokafka.Producer, "_transaction_producers", "init"),
        (faust_aiokafka.Producer, "_trn_locks", "init"),
        (faust.streams.Stream, "_enable_passive", "attr"),
        (faust.streams.Stream, "_processors", "init"),
        (ModeWorker, "_schedule_shutdown", "attr"),
        (AIOKafkaAdminClient, "_send_request", "attr"),
    ]


def check() -> list[str]:
    """What does not match the pinned versions or names (empty: all is as measured). Raises
    ConfigurationError with the list, unless ORCHESTRAL_ALLOW_UNPINNED=1 lets it pass."""
    problems = [
        f"{package} {installed} is installed, {pinned} is the version this worker was tested with"
        for package, pinned in PINNED.items()
        if (installed := importlib.metadata.version(package)) != pinned
    ]
    problems += [
        f"{cls.__module__}.{cls.__qualname__}.{name} is gone"
        for cls, name, kind in _used()
        if not _defines(cls, name, kind)
    ]
    if problems and os.environ.get(ALLOW_UNPINNED) != "1":
        raise ConfigurationError(
            "refusing to start on untested faust/aiokafka internals: "
            + "; ".join(problems)
            + f". Install the pinned versions (make setup), or set {ALLOW_UNPINNED}=1 to try"
            " anyway and run `make reliability` before trusting it."
        )
    return problems


def _defines(cls: type, name: str, kind: str) -> bool:
    if hasattr(cls, name):
        return True
    if kind != "init":
        return False
    for klass in cls.__mro__:  # declared, or assigned by an __init__ of the class or a base
        if name in getattr(klass, "__annotations__", {}):
            return True
        try:
            source = inspect.getsource(klass.__dict__["__init__"])
        except (KeyError, OSError, TypeError):
            continue
        if re.search(rf"self\.{name}\b\s*(:[^=]*)?=", source):
            return True
    return False


# --- faust: tables, consumer, producer ----------------------------------------------------


def partition_db(table: Any, partition: int) -> Any:
    """The RocksDB of one partition of a table: faust's table API looks a key up twice,
    through several layers, per record."""
    return table.data._db_for_partition(partition)


def restore_before_recovery(
    app: Any, restore: Callable[[dict[int, int | None]], Awaitable[dict[int, int]]]
) -> None:
    """Run `restore` on the active changelog partitions just before faust's recovery decides
    where to read them from (`Recovery._build_offsets`, called by `_restart_recovery` after the
    highwaters): it gets faust's start offsets by partition (the persisted ones, None for none)
    and returns the offsets it persisted, from which faust then reads on (changelog_restore.py
    says why). A failure of `restore` leaves faust's own recovery to do all of it."""
    recovery = app.tables.recovery
    build_offsets = recovery._build_offsets

    async def restored_first(consumer: Any, tps: Any, destination: Any, title: str) -> None:
        if title == "active" and tps:
            start = {tp.partition: destination.get(tp) for tp in tps}
            try:
                reached = await restore(start)
            except Exception as exc:  # faust's recovery reads it all instead
                log.warning("changelog restore failed, faust restores instead: %r", exc)
                reached = {}
            for tp in tps:
                if tp.partition in reached:
                    destination[tp] = reached[tp.partition]
        await build_offsets(consumer, tps, destination, title)

    recovery._build_offsets = restored_first


def persisted_offset_key() -> bytes:
    """The key under which faust's RocksDB store keeps the last changelog offset it applied
    (in each partition's database, as the offset's decimal text)."""
    from faust.stores.rocksdb import Store as RocksDBStore

    key: bytes = RocksDBStore.offset_key
    return key


def committed_offsets(consumer: Any) -> dict[Any, int]:
    """The offsets faust last committed, by TopicPartition (a lower bound of the broker's)."""
    committed: dict[Any, int] = consumer._committed_offset
    return committed


async def broker_end_offsets(consumer: Any, partitions: list[Any]) -> Any:
    """End offsets asked of the broker from faust's consumer thread (the last stable offset
    under read_committed), for `SafeConsumer.highwaters` (faust-streaming #597)."""
    thread = consumer._thread
    return await thread.call_thread(thread._ensure_consumer().end_offsets, partitions)


def plain_producer(producer: Any) -> Any:
    """faust's aiokafka producer, to queue whole record batches in it."""
    return producer._ensure_producer()


def transaction_producer(producer: Any, transactional_id: str) -> Target | None:
    """The transactional producer faust opened for an input partition and the lock faust takes
    around its sends; None when that transaction is not open (faust-streaming #177 family)."""
    transactional = producer._transaction_producers.get(transactional_id)
    if transactional is None:
        return None
    return transactional, producer._trn_locks[transactional_id]


def read_in_background(stream: Any) -> None:
    """Let faust's stream read its channel on its own, feeding its processors."""
    stream._enable_passive(aiter(stream.channel))


def remove_processor(stream: Any, processor: Callable[[Any], Any]) -> None:
    stream._processors.remove(processor)


def schedule_shutdown(worker: Any, sig: Any) -> None:
    """mode's own SIGTERM/SIGINT handler does only this."""
    worker._schedule_shutdown(sig)


# --- aiokafka: Metadata v12, for the cluster id and the topic ids --------------------------

NO_TOPIC_ID: Final = "00000000-0000-0000-0000-000000000000"


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


class _MetadataRequest(Request[_MetadataRequest_v12]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequest_v12]) -> _MetadataRequest_v12:
        return request_struct_class([(NO_TOPIC_ID, t, {}) for t in self._topics], False, False, {})


async def cluster_and_topic_ids(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> tuple[str, dict[str, str]]:
    """The cluster id and the ids of those of `topics` that exist. aiokafka 0.14 speaks
    Metadata up to v5, which has no topic ids (KIP-516, v10+): sent over its connection."""
    response: Any = await admin._send_request(_MetadataRequest(topics))
    ids = {
        name: topic_id
        for error_code, name, topic_id, *_ in response.topics
        if error_code == 0 and topic_id != NO_TOPIC_ID
    }
    return response.cluster_id, ids
