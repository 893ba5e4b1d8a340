"""processors/worker/logs.py: the worker's info log has no coordinator-wait ERROR and no ASCII
tables.

The records are logged the way aiokafka and faust log them (same logger, message and argument
types), through the logging faust's worker sets up (mode's `setup_logging`, which replaces the
root handlers, with faust's table formatter registered), so a filter that did not survive that
set-up, or missed what faust draws as a table, fails here.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import faust.worker  # noqa: F401  (registers faust's formatter that draws tables)
import pytest
from aiokafka.errors import (
    GroupCoordinatorNotAvailableError,
    GroupLoadInProgressError,
    KafkaConnectionError,
)
from aiokafka.structs import TopicPartition
from faust.utils import terminal
from mode.utils import logging as mode_logging

from processors.worker import logs


class WorkerLog:
    """What faust's worker writes: mode's root handler, its stream swapped for a buffer."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(self.stream)

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return self.text().splitlines()


@pytest.fixture
def worker_log(request: pytest.FixtureRequest) -> Iterator[WorkerLog]:
    """The log as faust's worker sets it up, at the level of the test's `level` parameter."""
    level = getattr(request, "param", "info")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    names = (logs.COORDINATOR_LOGGER, *logs.TABLE_LOGGERS)
    filters = {name: logging.getLogger(name).filters[:] for name in names}
    # Another test may have run the CLI in this process, which silences aiokafka's logger.
    aiokafka_level = logging.getLogger("aiokafka").level
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    logs.install()
    mode_logging.setup_logging(loglevel=level)
    yield WorkerLog()
    root.handlers[:], root.level = saved
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    logging.getLogger("aiokafka").setLevel(aiokafka_level)


def coordinator_error(error: Exception) -> None:
    logging.getLogger(logs.COORDINATOR_LOGGER).error("Group Coordinator Request failed: %s", error)


def test_coordinator_starting_is_not_an_error(worker_log: WorkerLog) -> None:
    coordinator_error(GroupCoordinatorNotAvailableError())
    coordinator_error(GroupLoadInProgressError())
    text = worker_log.text()
    out = text.splitlines()
    assert len(out) == 2
    assert all("[INFO]" in line and "waiting for the group coordinator" in line for line in out)
    assert "GroupCoordinatorNotAvailableError" in out[0]
    assert "ERROR" not in text


def test_other_coordinator_errors_stay_errors(worker_log: WorkerLog) -> None:
    coordinator_error(KafkaConnectionError("connection refused"))
    (line,) = worker_log.lines()
    assert "[ERROR]" in line
    assert "Group Coordinator Request failed" in line


TPS = {TopicPartition("events", p) for p in range(8)}


def log_tables() -> None:
    """What a start logs as tables: aiokafka's sets (drawn by faust's formatter), recovery's."""
    logging.getLogger("aiokafka.consumer.subscription_state").info(
        "Updating subscribed topics to: %s", frozenset({"events", "changelog"})
    )
    logging.getLogger("aiokafka.consumer.consumer").info(
        "Subscribed to topic(s): %s", {"events", "changelog"}
    )
    logging.getLogger(logs.COORDINATOR_LOGGER).info(
        "Setting newly assigned partitions %s for group %s", TPS, "app"
    )
    table = terminal.logtable([["events", "0", "-1"]], title="Highwater - Active", headers=["a"])
    logging.getLogger("faust.tables.recovery").info(
        "[^---Recovery]: Highwater for active changelog partitions:\n%s", table
    )


def log_plain_lines() -> None:
    logging.getLogger(logs.COORDINATOR_LOGGER).info(
        "Discovered coordinator %s for group %s", 1, "a"
    )
    logging.getLogger(logs.COORDINATOR_LOGGER).info(
        "Revoking previously assigned partitions %s for group %s", set(), "app"
    )
    logging.getLogger("faust.tables.recovery").info("[^---Recovery]: Worker ready")


def test_tables_are_not_in_the_info_log(worker_log: WorkerLog) -> None:
    log_tables()
    log_plain_lines()
    out = worker_log.lines()
    assert not any(line.startswith("+") for line in out), out
    assert len(out) == 3
    assert "Discovered coordinator 1" in out[0]
    assert "Worker ready" in out[2]


@pytest.mark.parametrize("worker_log", ["debug"], indirect=True)
def test_debug_shows_the_tables(worker_log: WorkerLog) -> None:
    log_tables()
    log_plain_lines()
    text = worker_log.text()
    assert text.count("| topic name |") == 2  # the two subscription tables
    assert "| events | {0-7}" in text  # the assignment table
    assert "| events | 0 | -1 |" in text  # recovery's table
    assert "Setting newly assigned partitions" in text
    assert text.count("[DEBUG]") == 4
    assert text.count("[INFO]") == 3


def test_the_table_rule_matches_what_faust_draws() -> None:
    """Every record faust's formatter turns into a box is one the filter calls a table."""
    formatter = mode_logging.ExtensionFormatter(stream=io.StringIO(), fmt="%(message)s")
    records = [
        logging.LogRecord("x", logging.INFO, __file__, 1, "Subscribed to topic(s): %s", ({"a"},), None),
        logging.LogRecord("x", logging.INFO, __file__, 1, "assigned %s", (TPS,), None),
        logging.LogRecord("x", logging.INFO, __file__, 1, "joined %s gen %s", ("g", 3), None),
        logging.LogRecord("x", logging.INFO, __file__, 1, "revoking %s", (set(),), None),
    ]  # fmt: skip
    for record in records:
        flagged = logs.drawn_as_table(record)
        drawn = "\n+" in formatter.format(record)
        assert flagged or not drawn, record.msg
    assert [logs.drawn_as_table(r) for r in records] == [True, True, False, False]


def test_install_is_idempotent() -> None:
    logger = logging.getLogger(logs.COORDINATOR_LOGGER)
    kept = logger.filters[:]
    try:
        logs.install()
        logs.install()
        kinds = [type(f) for f in logger.filters]
        assert kinds.count(logs.CoordinatorWaitFilter) == 1
        assert kinds.count(logs.TableFilter) == 1
    finally:
        logger.filters[:] = kept
