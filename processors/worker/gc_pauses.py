"""Keep the cyclic garbage collector's full collections short (latency, not throughput).

A worker holds about 95,000 long-lived container objects once it runs (faust, mode, aiokafka,
the modules, its assignment): CPython's full collection walked all of them, 30-98 ms on this
machine, every few seconds under load, and freed nothing in a 75 s probe. Records arriving
meanwhile wait (BENCHMARKS.md, "What limits the worker").

`settle` (on the first batch after each assignment, when those objects exist) collects once
and then freezes what is left (`gc.freeze`): frozen objects are never walked again, so later
collections look at the objects of the running work only. Freezing keeps a frozen object that
later becomes part of a garbage cycle; `settle` unfreezes first, so such leftovers are freed at
the next assignment and nothing accumulates across rebalances.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("orchestral.worker")


def settle() -> None:
    """Collect everything, then exempt what survived from later collections."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    log.debug(
        "gc: %d objects frozen in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
