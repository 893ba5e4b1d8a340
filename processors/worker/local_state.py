"""The worker's data dir belongs to one cluster and one incarnation of its topics.

Recorded beside the RocksDB state (`identity.json`): the cluster id and the ids of the events
topic and the state changelog. At start, a data dir recorded for another cluster or topic (a wiped
broker, a recreated topic, a `docker compose down` that lost Kafka's volume), or not recorded at
all (built before this check existed), is discarded: faust then restores the threads from the
changelog, or starts empty when the changelog is new too. Kept, its thread states would carry
offsets of the old topic, and new records at those offsets would be taken for replays and
produce nothing.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from processors.worker.cluster_identity import ClusterIdentity
from processors.worker.thread_log import DIRECTORY as THREAD_LOG

log = logging.getLogger("orchestral.worker")

IDENTITY_FILE = "identity.json"


def reconcile(data_dir: Path, identity: ClusterIdentity) -> list[str] | None:
    """Make `data_dir` hold state of `identity` only. Returns None when it did, else what did
    not match (the local state has been discarded)."""
    path = data_dir / IDENTITY_FILE
    recorded = _read(path)
    changes = None
    if recorded is not None:
        changes = identity.differences(recorded) or None
    elif _has_state(data_dir):
        changes = ["no cluster identity recorded with it"]
    if changes:
        _discard(data_dir)
        log.warning(
            "local state in %s does not belong to this cluster (%s): discarded, threads are "
            "restored from the changelog",
            data_dir,
            "; ".join(changes),
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity.to_json()))
    tmp.replace(path)  # atomic: a kill leaves the old record or the new one
    return changes


def _read(path: Path) -> ClusterIdentity | None:
    try:
        return ClusterIdentity.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        # Unreadable: treat it as another cluster's, so the state is rebuilt.
        return ClusterIdentity("unreadable identity file", {})


def _state_dirs(data_dir: Path) -> list[Path]:
    """faust keeps its tables under `<datadir>/v<app version>/`, the thread log its index under
    `<datadir>/thread-log/`; nothing else is touched, in case ORCHESTRAL_DATA_DIR points at a
    folder that holds other things too."""
    if not data_dir.is_dir():
        return []
    return [
        p
        for p in data_dir.iterdir()
        if p.is_dir() and (re.fullmatch(r"v\d+", p.name) or p.name == THREAD_LOG)
    ]


def _has_state(data_dir: Path) -> bool:
    return bool(_state_dirs(data_dir))


def _discard(data_dir: Path) -> None:
    for path in _state_dirs(data_dir):
        shutil.rmtree(path)
