"""A data dir holds the state of one cluster and one incarnation of its topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.worker.cluster_identity import ClusterIdentity
from processors.worker.local_state import IDENTITY_FILE, reconcile

ONE = ClusterIdentity("cluster-a", {"events": "id-1", "changelog": "id-2"})


def with_state(data_dir: Path) -> Path:
    table = data_dir / "v1" / "tables" / "threads-0.db"
    table.mkdir(parents=True)
    (table / "CURRENT").write_text("x")
    (data_dir / "unrelated.txt").write_text("keep me")
    return table


def test_a_fresh_data_dir_records_its_cluster(tmp_path: Path) -> None:
    assert reconcile(tmp_path / "new" / "dir", ONE) is None
    assert (tmp_path / "new" / "dir" / IDENTITY_FILE).is_file()


def test_state_of_the_same_cluster_is_kept(tmp_path: Path) -> None:
    reconcile(tmp_path, ONE)
    table = with_state(tmp_path)
    assert reconcile(tmp_path, ONE) is None
    assert (table / "CURRENT").is_file()


@pytest.mark.parametrize(
    ("now", "said"),
    [
        (ClusterIdentity("cluster-b", ONE.topic_ids), "cluster id cluster-a -> cluster-b"),
        (ClusterIdentity("cluster-a", {**ONE.topic_ids, "events": "id-9"}), "id-1 -> id-9"),
        (ClusterIdentity("cluster-a", {"changelog": "id-2"}), "events id id-1 -> deleted"),
    ],
)
def test_state_of_another_cluster_or_topic_is_discarded(
    tmp_path: Path, now: ClusterIdentity, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    reconcile(tmp_path, ONE)
    with_state(tmp_path)
    changes = reconcile(tmp_path, now)
    assert changes is not None and any(said in c for c in changes)
    assert not (tmp_path / "v1").exists()
    assert (tmp_path / "unrelated.txt").read_text() == "keep me"  # only faust's tables go
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # one line says so
    assert reconcile(tmp_path, now) is None  # and it is recorded


def test_state_without_a_recorded_identity_is_discarded(tmp_path: Path) -> None:
    with_state(tmp_path)
    assert reconcile(tmp_path, ONE) == ["no cluster identity recorded with it"]
    assert not (tmp_path / "v1").exists()


def test_an_unreadable_record_counts_as_another_cluster(tmp_path: Path) -> None:
    with_state(tmp_path)
    (tmp_path / IDENTITY_FILE).write_text("{not json")
    assert reconcile(tmp_path, ONE)
    assert not (tmp_path / "v1").exists()


def test_epochs_name_topic_incarnations_alike_on_every_worker() -> None:
    again = ClusterIdentity("cluster-a", dict(ONE.topic_ids))
    assert ONE.epoch("events") == again.epoch("events")
    assert ONE.epoch("events") != ClusterIdentity("c", {"events": "id-9"}).epoch("events")
    assert 0 <= ONE.epoch("events") < 2**31
