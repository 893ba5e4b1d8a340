"""Hypothesis strategies for the thread runtime: random settings and random *symbolic* input plans.

A plan is a list of symbolic steps. A step names its thread by index and may refer to interactions
symbolically, as `("known", k)` (the k-th interaction the core has started on that thread so far,
negative k counting from the newest), `("live", k)` (the same among those not terminal yet) or
`("unknown", id)` (an id the core never produced). The test driver resolves the references while
it feeds the records one at a time, so commands and outputs mostly address interactions that
exist, as a real executor's would.

Three flavours of plan (`scenarios(flavour=...)`, default: any): "mixed", "crowded" (several
interactions alive and waiting per thread) and "queue" (the queue fills and drains).

`ABSENT` marks a key left out of the record (as opposed to present and `null`).
"""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

from config.settings import Settings
from processors.core import Limits

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


# --- settings -------------------------------------------------------------------------------


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


# --- field values ---------------------------------------------------------------------------

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

# --- symbolic steps -------------------------------------------------------------------------


def _step(
    type_: str, thread: int, fields: dict[str, Any], refs_: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    return {"thread": thread, "type": type_, "fields": {**fields, **extra}, "refs": refs_}


def _common(**specific: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": event_ids,
            "timestamp": st.sampled_from(TIMESTAMPS),
            "task_id": optional_text,
            "step_id": optional_text,
            **specific,
        }
    )


threads = st.integers(0, len(THREAD_IDS) - 1)

# user_input / external_event: new turns (or resumes). Their own interaction_id is usually absent.
new_turns = st.one_of(
    st.builds(
        _step,
        st.just("user_input"),
        threads,
        _common(payload=payloads),
        st.fixed_dictionaries(
            {
                "interaction_id": weighted((3, st.just(ABSENT)), (1, optional_refs)),
                "expected_interaction_id": weighted((3, st.just(ABSENT)), (1, optional_refs)),
            }
        ),
        overrides,
    ),
    st.builds(
        _step,
        st.just("external_event"),
        threads,
        _common(payload=payloads, kind=st.sampled_from(EVENT_KINDS)),
        st.fixed_dictionaries(
            {
                "interaction_id": st.one_of(st.just(ABSENT), optional_refs),
                "expected_interaction_id": st.one_of(st.just(ABSENT), optional_refs),
            }
        ),
        overrides,
    ),
)

# assistant_output / artifact / system_trace: appended to an interaction (or not).
appends = st.builds(
    _step,
    st.sampled_from(("assistant_output", "artifact", "system_trace")),
    threads,
    _common(
        payload=payloads,
        reference_id=st.just("ref-1"),
        level=st.sampled_from(("info", "debug")),
    ),
    st.fixed_dictionaries(
        {
            # Mostly an interaction that exists; without one, the event goes to the policy.
            "interaction_id": weighted((3, refs), (1, optional_refs)),
            "expected_interaction_id": weighted((3, st.just(ABSENT)), (1, optional_refs)),
        }
    ),
    overrides,
)

INTERACTION_COMMANDS: Final = (
    "complete", "fail", "cancel", "wait_user", "wait_event", "pause", "resume", "add_task",
)  # fmt: skip


def _command(
    name: str, thread: int, common: dict[str, Any], ref: Any, extra: dict[str, Any]
) -> dict[str, Any]:
    fields = {k: v for k, v in common.items() if k in ("event_id", "timestamp")}
    fields["command"] = name
    fields.update(extra)
    return {"thread": thread, "type": "command", "fields": fields, "refs": {"interaction_id": ref}}


# How often each command addresses an interaction (a weight is a repeat).
_COMMAND_MIX: Final = (
    "complete", "complete", "fail", "cancel", "wait_user", "wait_user", "wait_user",
    "pause", "resume", "resume",
)  # fmt: skip
interaction_commands = weighted(
    (
        6,
        st.builds(
            _command,
            st.sampled_from(_COMMAND_MIX),
            threads,
            _common(),
            refs,  # required
            st.just({}),
        ),
    ),
    (
        2,
        st.builds(
            _command,
            st.just("wait_event"),
            threads,
            _common(),
            refs,
            st.one_of(
                st.just({}),
                st.builds(
                    lambda k: {"kind": k}, st.sampled_from((*EVENT_KINDS, "WEBHOOK", "*", None))
                ),
            ),
        ),
    ),
    (
        1,
        st.builds(
            _command,
            st.just("add_task"),
            threads,
            _common(),
            refs,
            st.builds(lambda t: {"task_id": t}, st.sampled_from(("task-a", "task-b"))),
        ),
    ),
)


def _configure_fields(policy: Any, max_interactions: Any, auto_cleanup: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in (
        ("policy", policy),
        ("max_interactions_per_thread", max_interactions),
        ("auto_cleanup", auto_cleanup),
    ):
        if value is not ABSENT:
            fields[key] = value
    return fields


thread_commands = st.one_of(
    st.builds(_command, st.just("cancel_all"), threads, _common(), optional_refs, st.just({})),
    st.builds(
        _command,
        st.just("configure"),
        threads,
        _common(),
        optional_refs,
        st.builds(
            _configure_fields,
            st.one_of(st.just(ABSENT), st.none(), policy_specs),
            st.one_of(st.just(ABSENT), st.none(), st.integers(1, 4)),
            st.one_of(st.just(ABSENT), st.none(), st.booleans()),
        ),
    ),
)

waits = st.builds(
    _command,
    st.sampled_from(("wait_user", "wait_event")),
    threads,
    _common(),
    st.tuples(st.just("live"), st.sampled_from((-1, -1, -2))),
    st.one_of(st.just({}), st.builds(lambda k: {"kind": k}, st.sampled_from(EVENT_KINDS))),
)

steps = weighted((6, new_turns), (2, appends), (5, interaction_commands), (1, thread_commands))


def _crowd(plan: list[tuple[int, str, Any]]) -> list[dict[str, Any]]:
    """Start interactions side by side and leave each active, waiting or paused."""
    out: list[dict[str, Any]] = []
    for thread, state, kind in plan:
        # assistant_output without an interaction id never resumes anything: it starts one.
        start_fields = {
            "timestamp": TIMESTAMPS[0],
            "payload": {"message": "go"},
            "concurrency": {"name": "parallel", "max_parallel": 4},
        }
        out.append(
            {"thread": thread, "type": "assistant_output", "fields": start_fields, "refs": {}}
        )
        if state != "active":
            fields = {"timestamp": TIMESTAMPS[0], "command": state}
            if state == "wait_event" and not _is_absent(kind):
                fields["kind"] = kind
            out.append(
                {
                    "thread": thread,
                    "type": "command",
                    "fields": fields,
                    "refs": {"interaction_id": ("live", -1)},
                }
            )
    return out


crowd_prefixes = st.lists(
    st.tuples(
        st.sampled_from((0, 0, 0, 1)),
        st.sampled_from(("wait_user", "wait_user", "wait_event", "wait_event", "pause", "active")),
        st.sampled_from((ABSENT, *EVENT_KINDS)),
    ),
    min_size=2,
    max_size=4,
).map(_crowd)
# Several interactions waiting at once: which one an event resumes or merges into matters.
crowded_steps = weighted(
    (6, new_turns), (2, appends), (4, waits), (3, interaction_commands), (1, thread_commands)
)
# Events pile up in the queue while the executor finishes interactions one after the other.
finishes = st.builds(
    _command,
    st.sampled_from(("complete", "complete", "fail", "cancel", "cancel_all")),
    threads,
    _common(),
    st.tuples(st.just("live"), st.sampled_from((-1, 0))),
    st.just({}),
)
queue_steps = weighted(
    (6, new_turns), (4, finishes), (2, interaction_commands), (1, thread_commands)
)
PLANS: Final = {"mixed": steps, "crowded": crowded_steps, "queue": queue_steps}


def scenarios(
    *,
    min_steps: int = 6,
    max_steps: int = 40,
    dedupe_window: st.SearchStrategy[int] | None = None,
    flavour: str | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Limits, how many threads are in play, and a symbolic plan.

    `flavour`: "mixed" (anything), "crowded" (several interactions alive per thread: which one
    an event resumes or merges into matters), "queue" (the queue fills and drains); None for
    any of them.
    """
    if flavour is None:
        return st.one_of(
            *(
                scenarios(
                    min_steps=min_steps, max_steps=max_steps, dedupe_window=dedupe_window, flavour=f
                )
                for f in FLAVOURS
            )
        )
    return st.fixed_dictionaries(
        {
            "settings": runtime_limits(dedupe_window=dedupe_window, flavour=flavour),
            # One thread most often: more collisions between its records.
            "threads": st.sampled_from((1, 1, 1, 2, 3)),
            "steps": st.builds(
                lambda prefix, tail: prefix + tail,
                crowd_prefixes if flavour == "crowded" else st.just([]),
                st.lists(PLANS[flavour], min_size=min_steps, max_size=max_steps),
            ),
        }
    )


def resolve(ref: Any, started: list[str], live: list[str]) -> Any:
    """A symbolic interaction reference -> a concrete id (or None / ABSENT unchanged).

    `started`: the thread's interactions in start order; `live`: those not terminal yet.
    """
    if ref is None or _is_absent(ref):
        return ref
    kind, value = ref
    if kind == "unknown":
        return value
    pool = live if kind == "live" and live else started
    return pool[value % len(pool)] if pool else UNKNOWN_IDS[0]


def concretize(
    step: dict[str, Any],
    n_threads: int,
    started: dict[str, list[str]],
    live: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The input record (decoded JSON) of one symbolic step."""
    thread_id = THREAD_IDS[step["thread"] % n_threads]
    value: dict[str, Any] = {"type": step["type"], "thread_id": thread_id}
    for key, field_value in step["fields"].items():
        if not _is_absent(field_value):
            value[key] = field_value
    for key, ref in step["refs"].items():
        resolved = resolve(ref, started.get(thread_id, []), (live or {}).get(thread_id, []))
        if not _is_absent(resolved):
            value[key] = resolved
    return value


def _is_absent(value: Any) -> bool:
    return isinstance(value, str) and value == ABSENT


def byte_edits(min_size: int = 0) -> st.SearchStrategy[list[tuple[str, int, bytes]]]:
    """Up to 4 edits of an encoded record: set, insert or delete a few bytes somewhere."""
    return st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]),
            st.integers(0, 10_000),
            st.binary(min_size=1, max_size=4),
        ),
        min_size=min_size,
        max_size=4,
    )


def mutate(data: bytes, edits: list[tuple[str, int, bytes]], cut: int | None = None) -> bytes:
    """`data` with `edits` applied (positions wrap around its length), then cut at `cut`."""
    out = bytearray(data)
    for op, at, value in edits:
        at %= len(out) + 1
        if op == "set":
            out[at : at + len(value)] = value
        elif op == "insert":
            out[at:at] = value
        else:
            del out[at : at + len(value)]
    return bytes(out if cut is None else out[:cut])
