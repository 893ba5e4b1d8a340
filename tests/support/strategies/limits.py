"""Settings for the shell and the core's limits, fixed or drawn by hypothesis."""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

from config.settings import Settings
from processors.core import Limits
from tests.support.strategies.records import ALL_POLICY_NAMES


def make_settings(**kwargs: Any) -> Settings:
    """Settings for the shell (the record handler); every field it reads is given."""
    return Settings(events_topic="orchestral.events", replay_buffer=10_000, **kwargs)


def make_limits(**kwargs: Any) -> Limits:
    # Every field the core reads is given, so the environment cannot leak in.
    return Limits(
        events_topic="orchestral.events",
        replay_buffer=10_000,
        **kwargs,
    )


FLAVOURS: Final = ("mixed", "crowded", "queue")


def runtime_limits(
    *, dedupe_window: st.SearchStrategy[int] | None = None, flavour: str = "mixed"
) -> st.SearchStrategy[Limits]:
    """`crowded`: only policies that let interactions pile up, and room for several;
    `queue`: the queue policy by default."""
    if flavour == "crowded":
        policies = st.sampled_from(("parallel", "merge", "steer", "queue", "enqueue"))
    elif flavour == "queue":
        policies = st.sampled_from(("queue", "enqueue"))
    else:  # policies that let interactions pile up are drawn more often: more to collide
        policies = st.sampled_from((*ALL_POLICY_NAMES, "parallel", "parallel", "queue", "merge"))
    low = 2 if flavour == "crowded" else 1
    return st.builds(
        make_limits,
        default_policy=policies,
        max_parallel=st.integers(low, 4),
        max_queue_depth=st.integers(1, 3),
        max_interactions_per_thread=st.integers(low, 4),
        auto_cleanup=st.booleans(),
        terminal_retention=st.sampled_from((0, 1, 2, 3, 100)),
        dedupe_window=dedupe_window
        if dedupe_window is not None
        else st.sampled_from((0, 1, 2, 3, 1000)),
    )
