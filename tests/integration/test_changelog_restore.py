"""The thread table's changelog read into RocksDB in batches (processors/worker/changelog_restore.py),
against a real broker and real RocksDB databases; the worker's own restarts are in test_recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import Options, Rdict

from devtools.deployment import Deployment
from processors.worker.changelog_restore import ChangelogRestore
from processors.worker.faust_compat import persisted_offset_key

pytestmark = pytest.mark.integration

OFFSET = persisted_offset_key()


@pytest.fixture
def dbs(tmp_path: Path) -> Iterator[dict[int, Rdict]]:
    opened = {p: Rdict(str(tmp_path / f"p{p}"), options=Options(raw_mode=True)) for p in (0, 1)}
    yield opened
    for db in opened.values():
        db.close()


async def _changelog(d: Deployment) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=d.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(d.settings.changelog_topic, 2, 1)])
    finally:
        await admin.close()


async def _write(
    d: Deployment, records: list[tuple[int, bytes, bytes | None]], **kw: object
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, **kw)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send_and_wait(
                d.settings.changelog_topic, value, key=key, partition=partition
            )
    finally:
        await producer.stop()


def _restore(
    d: Deployment, dbs: dict[int, Rdict], start: dict[int, int | None], budget: float = 60
) -> dict[int, int]:
    restore = ChangelogRestore(d.settings, dbs.__getitem__, OFFSET, budget)
    return asyncio.run(restore.restore(start))


def test_every_write_applied_in_order_with_faust_s_offset(
    deployment: Deployment, dbs: dict[int, Rdict]
) -> None:
    asyncio.run(_changelog(deployment))
    records = [(0, b"a", b"1"), (0, b"b", b"1"), (0, b"a", b"2"), (0, b"b", None), (1, b"c", b"1")]
    asyncio.run(_write(deployment, records))
    reached = _restore(deployment, dbs, {0: None, 1: None})
    assert reached == {0: 3, 1: 0}
    assert dict(dbs[0].items()) == {b"a": b"2", OFFSET: b"3"}  # b's tombstone deleted it
    assert dict(dbs[1].items()) == {b"c": b"1", OFFSET: b"0"}


def test_reads_on_after_the_persisted_offset_only(
    deployment: Deployment, dbs: dict[int, Rdict]
) -> None:
    asyncio.run(_changelog(deployment))
    asyncio.run(_write(deployment, [(0, b"a", b"old"), (0, b"b", b"1"), (0, b"a", b"new")]))
    dbs[0].put(b"a", b"kept")
    reached = _restore(deployment, dbs, {0: 1, 1: None})
    assert reached == {0: 2}  # partition 1 is empty: faust keeps its own offset
    assert dbs[0].get(b"a") == b"new" and dbs[0].get(b"b") is None


def test_an_aborted_transaction_is_not_restored(
    deployment: Deployment, dbs: dict[int, Rdict]
) -> None:
    asyncio.run(_changelog(deployment))

    async def transactions() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=deployment.bootstrap, transactional_id="t")
        await producer.start()
        try:
            for value, commit in ((b"committed", True), (b"aborted", False)):
                await producer.begin_transaction()
                await producer.send_and_wait(
                    deployment.settings.changelog_topic, value, key=b"k", partition=0
                )
                await (producer.commit_transaction() if commit else producer.abort_transaction())
        finally:
            await producer.stop()

    asyncio.run(transactions())
    reached = _restore(deployment, dbs, {0: None})
    assert dbs[0].get(b"k") == b"committed"
    # Past both markers: faust's recovery, which aims at the end minus one, has nothing left.
    assert reached == {0: 3} and dbs[0].get(OFFSET) == b"3"


def test_out_of_budget_leaves_the_rest_to_faust(
    deployment: Deployment, dbs: dict[int, Rdict]
) -> None:
    asyncio.run(_changelog(deployment))
    asyncio.run(_write(deployment, [(0, b"a", b"1")]))
    assert _restore(deployment, dbs, {0: None}, budget=0) == {}
    assert dbs[0].get(b"a") is None and dbs[0].get(OFFSET) is None
