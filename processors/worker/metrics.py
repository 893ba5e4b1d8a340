"""What the worker counts: Prometheus metrics and the periodic progress line.

Every label has a small fixed set of values (a status, a reason class, a partition number), so
the number of series is bounded whatever the input: a thread id is never a label.
"""

from __future__ import annotations

import time
from collections import Counter as Totals
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, get_args, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from schemas.records import OutcomeStatus

# name -> help; each is a Prometheus counter `orchestral_<name>_total`.
COUNTERS: Final = {
    "records_in": "Input records handled (replays included).",
    "store_out": "Records produced to the store topic.",
    "outcomes_out": "Records produced to the outcomes topic.",
    "dlq_out": "Input records sent to the dead-letter topic.",
    "replayed": "Records re-read after a crash or rebalance, their outputs re-emitted.",
    "redelivered": "Records the consumer delivered twice to this process (skipped).",
    "internal_errors": "Records the worker failed on (sent to the dead-letter topic).",
    "too_large": "Records whose outputs or state would exceed the max output size (dead-lettered).",
    "expires_sent": "Expire commands the deadline timer produced (one per passed deadline).",
    "rerouted": (
        "Records that arrived on another partition than their thread's and were forwarded to it."
    ),
    "replay_missing": (
        "Records at or below a thread's applied offset whose outputs were not in the replay "
        "buffer; applied as new."
    ),
}

# The contract's outcome statuses; anything else is counted as "other".
OUTCOME_STATUSES: Final[tuple[str, ...]] = (*get_args(OutcomeStatus), "other")

# Reason classes of the DLQ's `error` header (see `dead_letter_reason`).
DEAD_LETTER_REASONS: Final = (
    "undecodable",
    "unknown_type",
    "schema",
    "key_mismatch",
    "too_large",
    "internal",
    "other",
)

# A batch holds at most ORCHESTRAL_BATCH_MAX_RECORDS records.
BATCH_RECORDS_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
BATCH_SECONDS_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Latency includes the time a record waited in a backlog: the tail reaches an hour.
LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip

# An idle worker logs a progress line at most this often (seconds).
IDLE_PROGRESS_INTERVAL: Final = 60.0

# Shown in the progress line only when not zero: they mean something unusual happened.
_UNUSUAL: Final = (
    ("redelivered", "redelivered"),
    ("rerouted", "rerouted"),
    ("replay_missing", "replay missing"),
    ("internal_errors", "internal errors"),
    ("too_large", "too large"),
)


# Prefixes of the reasons of each class (see `dead_letter_reason`).
_UNDECODABLE: Final = (
    "empty value",
    "null value",
    "unknown encoding",
    "value is not valid",
    "value has a lone surrogate",
    "value cannot be written back",
    "Avro ",
    "truncated Avro",
    "malformed Avro",
    "unknown Avro schema id",
)
_SCHEMA: Final = (
    "input record must be",  # valid JSON, but not an object
    "missing field `",
    "invalid `",
    "command `",  # a model-level rule: "command `x` needs `interaction_id`"
    "`",  # an Avro record's JSON text field: "`payload` is not valid JSON text: ..."
    # pydantic's own words when the location is dropped: `_describe` drops a field named like
    # an input type, as `command` is ("Input should be 'complete', 'fail', ...").
    "Input should",
)


def dead_letter_reason(reason_text: str) -> str:
    """The class of a DLQ `error` reason, one of DEAD_LETTER_REASONS.

    Written against the reasons this project produces: `schemas/codec.py`, `json_codec.py` and
    `avro_codec.py` (bytes that do not decode), `schemas/records.py` (`parse_input`: the type,
    then the schema), `processors/worker/handler.py` (key check, `internal error: Type: ...`,
    which also wraps the worker's `OutputTooLarge`).
    """
    text = reason_text.strip()
    if text.startswith("internal error: OutputTooLarge"):
        return "too_large"
    if text.startswith("internal error:"):
        return "internal"
    if text.startswith("key ") and " does not match thread_id " in text:
        return "key_mismatch"
    if text == "missing field `type`" or text.startswith("unknown variant `"):
        return "unknown_type"
    if text.startswith(_UNDECODABLE) or "trailing bytes after the Avro body" in text:
        return "undecodable"
    if text.startswith(_SCHEMA):
        return "schema"
    return "other"


class Metrics:
    """The worker's metrics, on its own registry (served at /metrics), and its progress line."""

    def __init__(self, now: float | None = None) -> None:
        self.registry = CollectorRegistry()
        self.totals: Totals[str] = Totals()
        self._counters = {
            name: Counter(f"orchestral_{name}", doc, registry=self.registry)
            for name, doc in COUNTERS.items()
        }
        self._outcomes = Counter(
            "orchestral_outcomes",
            "Outcome records produced, by status.",
            ["status"],
            registry=self.registry,
        )
        self._dead_letters = Counter(
            "orchestral_dead_letters",
            "Records sent to the dead-letter topic, by class of reason.",
            ["reason"],
            registry=self.registry,
        )
        self._rebalances = Counter(
            "orchestral_rebalances",
            "Partition assignments this worker went through.",
            registry=self.registry,
        )
        self._batch_records = Histogram(
            "orchestral_batch_records",
            "Input records per batch.",
            buckets=BATCH_RECORDS_BUCKETS,
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "orchestral_batch_seconds",
            "Time to handle a batch and queue its outputs.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._latency = Histogram(
            "orchestral_record_latency_seconds",
            "Time from an input record's Kafka timestamp to its outputs being queued.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._deadline_tick = Histogram(
            "orchestral_deadline_tick_seconds",
            "Time of one deadline check: the due threads popped, read and their expires queued.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._deadline_threads = Gauge(
            "orchestral_deadline_threads",
            "Threads of this worker's partitions that have a pending deadline (the index).",
            registry=self.registry,
        )
        self._lag = Gauge(
            "orchestral_consumer_lag",
            "Input records not yet processed, by input partition.",
            ["partition"],
            registry=self.registry,
        )
        self._total_lag = Gauge(
            "orchestral_consumer_total_lag",
            "Input records not yet processed, all assigned partitions.",
            registry=self.registry,
        )
        # Labels created up front, so each series exists from the start (rate() needs a zero).
        for status in OUTCOME_STATUSES:
            self._outcomes.labels(status=status)
        for reason in DEAD_LETTER_REASONS:
            self._dead_letters.labels(reason=reason)
        # The default registry has these; the worker serves its own registry.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.last_lag = 0
        self._lag_partitions: set[int] = set()
        self._line = _LineState(now if now is not None else time.monotonic(), Totals(), 0)

    # --- counting -------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        self._counters[name].inc(n)
        self.totals[name] += n

    def outcome(self, status: str, n: int = 1) -> None:
        """n outcome records of this status produced (an unknown status counts as "other")."""
        label = status if status in OUTCOME_STATUSES else "other"
        self._outcomes.labels(status=label).inc(n)
        self.totals[f"outcome:{label}"] += n

    def dead_letter(self, reason_text: str | bytes) -> str:
        """One record dead-lettered with this `error` reason; returns the class counted."""
        if isinstance(reason_text, bytes):
            reason_text = reason_text.decode("utf-8", "replace")
        reason = dead_letter_reason(reason_text)
        self._dead_letters.labels(reason=reason).inc()
        self.totals[f"dead_letter:{reason}"] += 1
        return reason

    def observe_batch(self, records: int, seconds: float) -> None:
        self._batch_records.observe(records)
        self._batch_seconds.observe(max(0.0, seconds))

    def observe_deadline_tick(self, seconds: float, threads: int) -> None:
        self._deadline_tick.observe(max(0.0, seconds))
        self._deadline_threads.set(threads)

    def observe_latency(self, seconds: float) -> None:
        # A producer's clock ahead of ours gives a negative time: it was at most "now".
        self._latency.observe(max(0.0, seconds))

    def rebalance(self) -> None:
        self._rebalances.inc()
        self.totals["rebalances"] += 1

    def set_lag(self, lag: int | Mapping[int, int]) -> None:
        """The lag, as a total or per input partition (then the gauges of partitions no longer
        given are removed: they belong to another worker after a rebalance)."""
        if isinstance(lag, Mapping):
            for partition in self._lag_partitions - set(lag):
                self._lag.remove(str(partition))
            for partition, value in lag.items():
                self._lag.labels(partition=str(partition)).set(value)
            self._lag_partitions = set(lag)
            lag = sum(lag.values())
        self._total_lag.set(lag)
        self.last_lag = lag

    # --- the progress line ----------------------------------------------------------------

    @overload
    def progress_line(self) -> str: ...
    @overload
    def progress_line(self, now: float) -> str | None: ...
    def progress_line(self, now: float | None = None) -> str | None:
        """The line to log now, with rates since the last one; None to stay quiet: nothing was
        counted and the lag did not change since the last line, under a minute ago.

        `now` is a monotonic clock (`time.monotonic()`). Without it: always a line.
        """
        always = now is None
        at = time.monotonic() if now is None else now
        last = self._line
        idle = self.totals == last.totals and self.last_lag == last.lag
        if idle and not always and at - last.at < IDLE_PROGRESS_INTERVAL:
            return None
        self._line = _LineState(at, self.totals.copy(), self.last_lag)
        span = _seconds(at - last.at)
        seconds = max(at - last.at, 1e-9)
        t = self.totals

        def field(label: str, name: str) -> str:
            if idle:
                return f"{label} {t[name]:,}"
            return f"{label} {t[name]:,} ({_number((t[name] - last.totals[name]) / seconds)}/s)"

        fields = [
            field("records in", "records_in"),
            field("outcomes out", "outcomes_out"),
            field("stored", "store_out"),
            field("dead-lettered", "dlq_out"),
            f"replayed {t['replayed']:,}",
            *(f"{label} {t[name]:,}" for name, label in _UNUSUAL if t[name]),
            f"lag {self.last_lag:,}",
        ]
        when = f"nothing handled in the last {span}" if idle else f"rates over the last {span}"
        return f"progress: {', '.join(fields)} ({when})"


@dataclass(frozen=True, slots=True)
class _LineState:
    """What the last progress line saw: when, the totals, the lag."""

    at: float
    totals: Totals[str]
    lag: int


def _number(rate: float) -> str:
    """1,234 or 12.5 or 0.2: whole numbers from 100 on, one decimal below, 0 for nothing."""
    if rate == 0:
        return "0"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
