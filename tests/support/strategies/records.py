"""Field values of input records, drawn by hypothesis: thread ids, policy names and their
aliases, timestamps and their canonical forms, payloads, JSON values, event ids, policy specs,
symbolic interaction references.

`ABSENT` marks a key left out of the record (as opposed to present and `null`).
"""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

ABSENT: Final = "<absent>"

THREAD_IDS: Final = ("t1", "t2", "thread-ü")
POLICY_NAMES: Final = ("interrupt", "reject", "parallel", "merge", "queue", "rollback")
# The contract's aliases (the table's parenthesised names that are not options).
POLICY_ALIASES: Final = {
    "interrupt_and_start_new": "interrupt",
    "reject_when_busy": "reject",
    "steer": "merge",
    "enqueue": "queue",
}
ALL_POLICY_NAMES: Final = POLICY_NAMES + tuple(POLICY_ALIASES)
EVENT_KINDS: Final = ("webhook", "email", "Timer")
# A small pool, so that explicit event ids repeat (duplicates, and ids that left the window).
EVENT_ID_POOL: Final = ("e0", "e1", "e2", "e3")
UNKNOWN_IDS: Final = ("11111111-1111-5111-8111-111111111111", "nope")
# Input timestamp -> its canonical form on output (UTC, `Z`, shortest exact 0/3/6/9 digits).
CANONICAL_TIMESTAMPS: Final = {
    "2024-01-01T00:00:00Z": "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00.123Z": "2024-01-01T00:00:00.123Z",
    "2024-01-01T02:00:00+02:00": "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00.500000Z": "2024-01-01T00:00:00.500Z",
    "2024-02-29T23:59:59.123456789Z": "2024-02-29T23:59:59.123456789Z",
    "2023-12-31T23:00:00-01:00": "2024-01-01T00:00:00Z",
    "2030-01-01T00:00:00Z": "2030-01-01T00:00:00Z",
}
TIMESTAMPS: Final = tuple(CANONICAL_TIMESTAMPS)[:-1]


def canonical(name: str) -> str:
    return POLICY_ALIASES.get(name, name)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """A strategy drawn with the given weights (`one_of` picks its branches uniformly)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
# Mostly a message; sometimes null (invalid on user_input / external_event), sometimes anything.
_messages = st.builds(lambda m: {"message": m}, st.text(max_size=6))
payloads = weighted((6, _messages), (1, st.none()), (1, json_values))

# Mostly the newest interaction (the one an executor is running), sometimes older ones.
_indexes = st.sampled_from((-1, -1, -1, -1, -2, -3, 0, 1, 2))
refs = weighted(
    (3, st.tuples(st.just("live"), _indexes)),  # among the non-terminal ones
    (2, st.tuples(st.just("known"), _indexes)),  # among all started so far
    (1, st.tuples(st.just("unknown"), st.sampled_from(UNKNOWN_IDS))),
)
# For fields that are optional on input: absent, null, or a reference.
optional_refs = st.one_of(st.just(ABSENT), st.none(), refs)
optional_text = st.one_of(st.just(ABSENT), st.none(), st.sampled_from(("task-1", "s")))

event_ids = weighted(
    (3, st.just(ABSENT)),  # the processor derives it from the position
    (3, st.sampled_from(EVENT_ID_POOL)),
    (1, st.sampled_from(("u-ü", "u-日", "u-😀"))),
)

policy_options = st.one_of(st.just(ABSENT), st.none(), st.integers(1, 3))


def _with_options(
    fields: dict[str, Any], max_parallel: Any, max_queue_depth: Any
) -> dict[str, Any]:
    """`fields` plus the policy options that are not ABSENT."""
    for key, value in (("max_parallel", max_parallel), ("max_queue_depth", max_queue_depth)):
        if value is not ABSENT:
            fields[key] = value
    return fields


def _spec_object(name: str, max_parallel: Any, max_queue_depth: Any) -> dict[str, Any]:
    return _with_options({"name": name}, max_parallel, max_queue_depth)


# A policy as the wire carries it: a bare name, or an object with options.
policy_specs = st.one_of(
    st.sampled_from(ALL_POLICY_NAMES),
    st.builds(_spec_object, st.sampled_from(ALL_POLICY_NAMES), policy_options, policy_options),
)


def _flat_override(name: str, max_parallel: Any, max_queue_depth: Any) -> dict[str, Any]:
    """The flat form: `"concurrency": NAME` with the options beside it."""
    return _with_options({"concurrency": name}, max_parallel, max_queue_depth)


# Extra fields of an event that may go to the concurrency policy.
overrides = weighted(
    (4, st.just({})),
    (2, st.builds(lambda spec: {"concurrency": spec}, policy_specs)),
    (
        1,
        st.builds(
            _flat_override, st.sampled_from(ALL_POLICY_NAMES), policy_options, policy_options
        ),
    ),
)
