"""Random *symbolic* input plans for the thread runtime, and how they become input records.

A plan is a list of symbolic steps. A step names its thread by index and may refer to interactions
symbolically, as `("known", k)` (the k-th interaction the core has started on that thread so far,
negative k counting from the newest), `("live", k)` (the same among those not terminal yet) or
`("unknown", id)` (an id the core never produced). The test driver resolves the references while
it feeds the records one at a time, so commands and outputs mostly address interactions that
exist, as a real executor's would.

Three flavours of plan (`scenarios(flavour=...)`, default: any): "mixed", "crowded" (several
interactions alive and waiting per thread) and "queue" (the queue fills and drains).

The field values come from `records.py`, the limits of a scenario from `limits.py`.
"""

from __future__ import annotations

from typing import Any, Final

from hypothesis import strategies as st

from tests.support.strategies.limits import FLAVOURS, runtime_limits
from tests.support.strategies.records import (
    ABSENT,
    EVENT_KINDS,
    THREAD_IDS,
    TIMESTAMPS,
    UNKNOWN_IDS,
    event_ids,
    optional_refs,
    optional_text,
    overrides,
    payloads,
    policy_specs,
    refs,
    weighted,
)


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
