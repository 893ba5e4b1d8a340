"""Log filters that keep the worker's default (info) log about the worker.

Seen on a first start against a fresh broker (faust-streaming 0.15.3, aiokafka 0.14.0):

- `aiokafka.consumer.group_coordinator` logs `Group Coordinator Request failed: [Error 15]
  GroupCoordinatorNotAvailableError` at ERROR while the broker creates `__consumer_offsets`;
  aiokafka retries and joins a few hundred milliseconds later. After a broker restart the same
  wait is `GroupLoadInProgressError` (error 14). Both are demoted to INFO: a normal wait.
- faust draws ASCII tables at INFO: its log formatter (`faust/worker.py`,
  `format_log_arguments`) turns the topic and partition sets that aiokafka's consumer logs
  (`Updating subscribed topics to`, `Subscribed to topic(s)`, `Setting newly assigned
  partitions`) into boxes, and `faust.tables.recovery` logs its own (changelog highwaters,
  offsets at start of reading, remaining for recovery), every rebalance. They are demoted to
  DEBUG: `ORCHESTRAL_LOG_LEVEL=debug` still shows them.

The filters sit on those loggers, not on handlers: faust's worker replaces the root handlers
when it starts, and a logger's filters survive that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from aiokafka.errors import GroupCoordinatorNotAvailableError, GroupLoadInProgressError

COORDINATOR_LOGGER: Final = "aiokafka.consumer.group_coordinator"
# The loggers whose INFO records faust draws as tables.
TABLE_LOGGERS: Final = (
    "aiokafka.consumer.subscription_state",
    "aiokafka.consumer.consumer",
    COORDINATOR_LOGGER,
    "faust.tables.recovery",
)

# Retriable errors of a coordinator that is starting (error 15) or loading its groups (14).
_COORDINATOR_STARTING: Final = (GroupCoordinatorNotAvailableError, GroupLoadInProgressError)


class CoordinatorWaitFilter(logging.Filter):
    """An ERROR about a group coordinator that is still starting becomes INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and _has_arg(record, _COORDINATOR_STARTING):
            record.msg = "waiting for the group coordinator (retrying): %s"
            _set_level(record, logging.INFO)
        return True


class TableFilter(logging.Filter):
    """An INFO record drawn as a table becomes DEBUG, shown only when DEBUG is enabled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not drawn_as_table(record):
            return True
        _set_level(record, logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def drawn_as_table(record: logging.LogRecord) -> bool:
    """Whether the record is, or faust's formatter will make it, an ASCII table: a message
    with a box line, or an argument that is a non-empty collection (topics, partitions)."""
    if any(_is_box_line(line) for line in record.getMessage().splitlines()):
        return True
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    return any(isinstance(a, set | frozenset | list | Mapping) and a for a in args)


def install() -> None:
    """Put the filters on their loggers (idempotent)."""
    _add_once(logging.getLogger(COORDINATOR_LOGGER), CoordinatorWaitFilter)
    for name in TABLE_LOGGERS:
        _add_once(logging.getLogger(name), TableFilter)


def _add_once(logger: logging.Logger, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in logger.filters):
        logger.addFilter(kind())


def _is_box_line(line: str) -> bool:
    # faust's terminal.logtable: "+Title----+-----+" and "+------+"
    line = line.strip()
    return len(line) > 2 and line[0] == "+" and line[-1] == "+" and "-" in line


def _has_arg(record: logging.LogRecord, kinds: tuple[type[Exception], ...]) -> bool:
    args = record.args if isinstance(record.args, tuple) else (record.args,)
    return any(isinstance(a, kinds) for a in args)


def _set_level(record: logging.LogRecord, level: int) -> None:
    record.levelno = level
    record.levelname = logging.getLevelName(level)
