"""What the worker counts: Prometheus metrics and the periodic progress line."""

from __future__ import annotations

from collections import Counter as Totals

from prometheus_client import CollectorRegistry, Counter, Gauge

# name -> help; each is a Prometheus counter `orchestral_<name>_total`.
COUNTERS = {
    "records_in": "Input records handled (replays included).",
    "store_out": "Records produced to the store topic.",
    "outcomes_out": "Records produced to the outcomes topic.",
    "dlq_out": "Input records sent to the dead-letter topic.",
    "replayed": "Records re-read after a crash or rebalance, their outputs re-emitted.",
    "redelivered": "Records the consumer delivered twice to this process (skipped).",
    "internal_errors": "Records the worker failed on (sent to the dead-letter topic).",
    "too_large": "Records whose outputs or state would exceed the max output size (dead-lettered).",
    "rerouted": "Records that arrived on another partition than their thread's, forwarded to it.",
    "replay_missing": (
        "Records at or below a thread's applied offset whose outputs were not in the replay "
        "buffer; applied as new."
    ),
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.totals: Totals[str] = Totals()
        self._counters = {
            name: Counter(f"orchestral_{name}", doc, registry=self.registry)
            for name, doc in COUNTERS.items()
        }
        self.lag = Gauge(
            "orchestral_consumer_lag", "Input records not yet processed.", registry=self.registry
        )
        self.last_lag = 0

    def count(self, name: str, n: int = 1) -> None:
        self._counters[name].inc(n)
        self.totals[name] += n

    def set_lag(self, lag: int) -> None:
        self.lag.set(lag)
        self.last_lag = lag

    def progress_line(self) -> str:
        t = self.totals
        return (
            f"progress: records in {t['records_in']}, outcomes out {t['outcomes_out']}, "
            f"stored {t['store_out']}, dead-lettered {t['dlq_out']}, replayed {t['replayed']}, "
            f"lag {self.last_lag}"
        )
