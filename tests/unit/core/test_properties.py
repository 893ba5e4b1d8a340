"""Property-based tests of the core (`processors.core`) against the wire contract.

Random settings, random mixes of input records for up to three threads, fed one at a time with
`apply` (so that commands and outputs can name interactions the core has actually started, see
`strategies.py`). Each property checks the outputs against a small independent model of the
contract built from the outputs seen so far, and, where the contract speaks of state, the
`ThreadState`s the core returns.

Properties: one outcome per input (1); limits and the policy table (2); gap-free `seq` (3);
derived ids and logical time; terminal states are final (4: xfail, a core bug, see the test;
the same property holds while no event id can leave the dedupe window); the queue (5);
determinism and thread independence (6); replay safety (7a, 7b, 7c); state round trip (8);
output shapes; routing (resume first, merge, append, commands).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from processors.core import Limits, Position, ThreadState, apply, ids, replay
from processors.core.outputs import Output
from schemas.json_codec import JsonCodec
from schemas.records import (
    EVENT_FIELDS,
    InteractionRecord,
    Outcome,
    StoredEvent,
    parse_input,
)
from tests.support.strategies import limits, plans, records

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Command -> the state it moves its interaction to (the contract's command names).
TRANSITIONS = {
    "complete": "completed", "fail": "failed", "cancel": "cancelled", "wait_user": "waiting_user",
    "wait_event": "waiting_event", "pause": "paused", "resume": "active",
}  # fmt: skip
CODEC = JsonCodec()
OUTCOME_FIELDS = (
    "type", "thread_id", "source_event_id", "status", "interaction_id", "reason",
    "queue_position", "timestamp",
)  # fmt: skip
INTERACTION_FIELDS = (
    "type", "thread_id", "interaction_id", "state", "previous_state", "cause_event_id", "timestamp",
)  # fmt: skip

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- driver ---------------------------------------------------------------------------------


@dataclass
class Step:
    offset: int
    value: dict[str, Any]  # the input record, decoded
    thread_id: str
    event_id: str  # given or derived
    explicit: bool  # the producer gave the event id
    before: ThreadState | None
    before_bytes: bytes | None  # the state saved just before this record
    after: ThreadState
    outputs: list[Output]

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        return [r for _, r in self.outputs if r["type"] == "outcome"]

    @property
    def outcome(self) -> dict[str, Any]:
        return self.outcomes[0]

    @property
    def interactions(self) -> list[dict[str, Any]]:
        return [r for _, r in self.outputs if r["type"] == "interaction"]

    @property
    def stored(self) -> list[dict[str, Any]]:
        return [r for t, r in self.outputs if t == "store"]

    @property
    def starts(self) -> list[dict[str, Any]]:
        return [r for r in self.interactions if r["previous_state"] is None]

    @property
    def mark_ids(self) -> set[str]:
        """Event ids of the `turn_rolled_back` marks this step must store, one a rollback."""
        rolled_back = [
            r for r in self.interactions if r["state"] == "cancelled" and r["rolled_back"]
        ]
        return {ids.rollback_mark_id(r["interaction_id"], self.event_id) for r in rolled_back}


@dataclass
class Run:
    settings: Limits
    values: list[dict[str, Any]]
    steps: list[Step]
    states: dict[str, ThreadState]  # the last state of each thread


def position(s: Limits, offset: int) -> Position:
    return Position(s.events_topic, 0, offset)


def execute(scenario: dict[str, Any]) -> Run:
    """Feed the plan one record at a time, resolving interaction references as it goes."""
    cfg: Limits = scenario["settings"]
    states: dict[str, ThreadState] = {}
    started: dict[str, list[str]] = {}  # per thread, in start order
    announced: dict[str, dict[str, str]] = {}  # per thread: interaction -> last announced state
    steps: list[Step] = []
    for offset, symbolic in enumerate(scenario["steps"]):
        live = {
            t: [i for i in started.get(t, []) if announced[t][i] not in TERMINAL] for t in started
        }
        value = plans.concretize(symbolic, scenario["threads"], started, live)
        record = parse_input(value)
        before = states.get(record.thread_id)
        before_bytes = before.to_bytes() if before is not None else None
        after, outputs = apply(before, record, position(cfg, offset), cfg)
        states[record.thread_id] = after
        for r in [r for _, r in outputs if r["type"] == "interaction"]:
            known = started.setdefault(record.thread_id, [])
            if r["previous_state"] is None and r["interaction_id"] not in known:
                known.append(r["interaction_id"])
            announced.setdefault(record.thread_id, {})[r["interaction_id"]] = r["state"]
        steps.append(
            Step(
                offset=offset,
                value=value,
                thread_id=record.thread_id,
                event_id=record.event_id or f"{cfg.events_topic}:0:{offset}",
                explicit=record.event_id is not None,
                before=before,
                before_bytes=before_bytes,
                after=after,
                outputs=outputs,
            )
        )
    return Run(cfg, [s.value for s in steps], steps, states)


def encoded(outputs: list[Output]) -> list[tuple[str, bytes]]:
    return [(topic, CODEC.encode(record)) for topic, record in outputs]


# --- an independent model of one thread, from the outputs -----------------------------------


def _spec(raw: Any, flat: dict[str, Any] | None = None) -> tuple[str, Any, Any] | None:
    """(name, max_parallel, max_queue_depth) of a policy as the wire carries it."""
    if raw is None:
        return None
    if isinstance(raw, str):
        flat = flat or {}
        return records.canonical(raw), flat.get("max_parallel"), flat.get("max_queue_depth")
    return records.canonical(raw["name"]), raw.get("max_parallel"), raw.get("max_queue_depth")


@dataclass
class Model:
    states: dict[str, str] = field(default_factory=dict)  # interaction -> last announced state
    order: list[str] = field(default_factory=list)  # interactions, most recently started last
    wait_kind: dict[str, Any] = field(default_factory=dict)
    policy: tuple[str, Any, Any] | None = None  # `configure`d
    max_interactions: int | None = None
    queue: list[str] = field(default_factory=list)  # queued event ids, oldest first
    # Event id -> index (among this thread's records) of its first sighting in a valid record.
    first_seen: dict[str, int] = field(default_factory=dict)
    records: int = 0  # records of this thread observed
    seq: int = 0
    observed: int = -1  # offset of the last step observed

    def nonterminal(self) -> list[str]:
        return [i for i, s in self.states.items() if s not in TERMINAL]

    def limit(self, cfg: Limits) -> int:
        return self.max_interactions or cfg.max_interactions_per_thread

    def effective(self, value: dict[str, Any], cfg: Limits) -> tuple[str, int, int]:
        """The policy of an event: its override, else the configured one, else the default."""
        spec = (
            _spec(value.get("concurrency"), value)
            or self.policy
            or (records.canonical(cfg.default_policy), None, None)
        )
        return spec[0], spec[1] or cfg.max_parallel, spec[2] or cfg.max_queue_depth

    def expects_duplicate(self, event_id: str, cfg: Limits) -> bool:
        """The id is certainly within the dedupe window ("the last N ids"), whichever way that is
        read (N ids first seen since, or N ids seen since its last sighting): fewer than N records
        of this thread came after its first sighting, so at most N-1 other ids can be newer."""
        first = self.first_seen.get(event_id)
        return first is not None and self.records - first - 1 < cfg.dedupe_window

    def observe(self, step: Step) -> None:
        """Advance the model by one step's outputs (no checks here)."""
        if self.observed == step.offset:
            return
        self.observed = step.offset
        outcome, value = step.outcome, step.value
        own_start = outcome["status"] == "started"
        for r in step.interactions:
            iid = r["interaction_id"]
            if r["previous_state"] is None:
                if iid in self.order:
                    self.order.remove(iid)
                self.order.append(iid)
                if not own_start and self.queue:
                    self.queue.pop(0)  # a queued event started
            self.states[iid] = r["state"]
        if outcome["status"] == "queued":
            self.queue.append(step.event_id)
        if value["type"] == "command" and outcome["status"] == "applied":
            if value["command"] == "configure":
                if value.get("policy") is not None:
                    self.policy = _spec(value["policy"])
                if value.get("max_interactions_per_thread") is not None:
                    self.max_interactions = value["max_interactions_per_thread"]
            elif value["command"] == "wait_event":
                self.wait_kind[value["interaction_id"]] = value.get("kind")
        if outcome["status"] != "invalid":
            self.first_seen.setdefault(step.event_id, self.records)
        self.records += 1
        for r in step.stored:
            self.seq = r["seq"]


def walk(run: Run) -> Any:
    """Yield (step, the thread's model before the step); the model is advanced after each yield
    (a test may advance it itself, to check the model after the step)."""
    models: dict[str, Model] = {}
    for step in run.steps:
        model = models.setdefault(step.thread_id, Model())
        yield step, model
        model.observe(step)


def explicit_ids_before(run: Run, step: Step) -> set[str]:
    return {
        s.event_id for s in run.steps[: step.offset] if s.thread_id == step.thread_id and s.explicit
    }


# --- 1. one outcome per input ---------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_exactly_one_outcome_per_input_with_its_event_id(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    for step in run.steps:
        assert len(step.outcomes) == 1, step.outputs
        outcome = step.outcome
        assert outcome["source_event_id"] == step.event_id
        assert step.value.get("event_id", f"{run.settings.events_topic}:0:{step.offset}") == (
            step.event_id
        )
        # Every output of a record belongs to its thread.
        assert all(r["thread_id"] == step.thread_id for _, r in step.outputs)
        if outcome["status"] == "duplicate":
            # Only a producer-given id can repeat, and only one this thread has seen.
            assert step.explicit
            assert step.event_id in explicit_ids_before(run, step)


# --- 2. interaction limits and the policy table ---------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_nonterminal_interactions_stay_within_limits(scenario: dict[str, Any]) -> None:
    run, cfg = execute(scenario), scenario["settings"]
    for step, model in walk(run):
        before = list(model.nonterminal())
        limit = model.limit(cfg)
        name, max_parallel, max_queue_depth = model.effective(step.value, cfg)
        outcome, reason = step.outcome, step.outcome["reason"] or ""
        active_before = [i for i in before if model.states[i] == "active"]
        cancelled = [r for r in step.interactions if r["state"] == "cancelled"]

        if outcome["status"] == "started":
            assert len(before) < limit or name in ("interrupt", "rollback")
            if name == "parallel":
                assert len(before) < max_parallel
            elif name in ("interrupt", "rollback"):
                # Every non-terminal interaction is cancelled (rolled back for `rollback`).
                assert sorted(r["interaction_id"] for r in cancelled) == sorted(before)
                assert all(r["rolled_back"] == (name == "rollback") for r in cancelled)
            elif name == "merge":
                assert not active_before and not cancelled
                if step.value.get("expected_interaction_id") is not None:
                    assert not before  # falls back to `queue`: starts only when idle
            else:  # reject, queue
                assert not before
        elif outcome["status"] == "rejected" and reason.startswith("Maximum parallel"):
            assert name == "parallel" and len(before) >= max_parallel
            assert reason == f"Maximum parallel interactions ({max_parallel}) reached"
        elif outcome["status"] == "rejected" and reason.startswith("Maximum active"):
            assert reason == f"Maximum active interactions ({limit}) reached"
            assert len(before) >= limit
        elif outcome["status"] == "rejected" and reason.startswith("System is busy"):
            assert name == "reject" and before
        elif outcome["status"] == "rejected" and reason.startswith("Queue full"):
            assert name in ("queue", "merge") and len(model.queue) >= max_queue_depth
            assert reason == f"Queue full ({max_queue_depth})"
        if outcome["status"] == "rejected" and not reason.startswith(
            ("Interaction not found", "interaction '")
        ):
            # Refused by the policy or a limit: still stored, with the producer's own id.
            producer_iid = step.value.get("interaction_id")
            assert [(r["interaction_id"], r["event_id"]) for r in step.stored] == [
                (producer_iid, step.event_id)
            ]
            assert outcome["interaction_id"] == producer_iid

        model.observe(step)
        after = model.nonterminal()
        assert sorted(after) == sorted(i.id for i in step.after.nonterminal())
        limit = model.limit(cfg)
        if step.starts:
            assert len(after) <= limit
            if outcome["status"] == "started" and name == "parallel":
                assert len(after) <= max_parallel
            if outcome["status"] == "started" and name in ("interrupt", "rollback"):
                assert len(after) == 1
        # A step may lower the limit (configure) but never add interactions over it.
        assert len(after) <= max(len(before), limit)
        # At most `terminal_retention` terminal interactions are kept.
        assert sum(i.terminal for i in step.after.interactions.values()) <= cfg.terminal_retention


# --- 3. seq ---------------------------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_seq_is_gap_free_from_one_per_thread(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    last: dict[str, int] = {}
    for step in run.steps:
        drained = {r["cause_event_id"] for r in step.starts} - {step.event_id}
        for r in step.stored:
            last[step.thread_id] = last.get(step.thread_id, 0) + 1
            assert r["seq"] == last[step.thread_id]
            assert r["event_id"] in {step.event_id} | drained | step.mark_ids
        assert step.after.seq == last.get(step.thread_id, 0)


# --- lifecycle marks -----------------------------------------------------------------------


def is_mark(record: dict[str, Any]) -> bool:
    payload = record.get("payload")
    return (
        record["type"] == "system_trace"
        and record["interaction_id"] is None
        and isinstance(payload, dict)
        and payload.get("event_type") == "turn_rolled_back"
    )


@PROPERTY
@given(plans.scenarios())
def test_each_rolled_back_interaction_gets_one_mark_right_after_its_record(
    scenario: dict[str, Any],
) -> None:
    run = execute(scenario)
    for step in run.steps:
        outputs = step.outputs
        for i, (_, r) in enumerate(outputs):
            if r["type"] == "interaction" and r["state"] == "cancelled" and r["rolled_back"]:
                topic, mark = outputs[i + 1]
                assert topic == "store" and is_mark(mark), outputs
                assert mark["payload"] == {
                    "category": "runtime_lifecycle",
                    "event_type": "turn_rolled_back",
                    "interaction_id": r["interaction_id"],
                }
                assert (mark["level"], mark["event_id"]) == (
                    "info",
                    ids.rollback_mark_id(r["interaction_id"], step.event_id),
                )
        # No other record is a mark (an input trace would need that payload by chance).
        marks = [r for r in step.stored if is_mark(r) and r["event_id"] != step.event_id]
        assert {r["event_id"] for r in marks} == step.mark_ids
        assert len(marks) == len(step.mark_ids)


# --- identity and logical time ------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_ids_are_derived_and_time_comes_from_the_input(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    derived: dict[tuple[str, str], str] = {}  # (thread, source event id) -> interaction id
    timestamps: dict[tuple[str, str], set[str]] = {}  # (thread, event id) -> canonical inputs
    for step in run.steps:
        own = records.CANONICAL_TIMESTAMPS[step.value["timestamp"]]
        timestamps.setdefault((step.thread_id, step.event_id), set()).add(own)
        # Outcome and interaction records carry the input's time, never the wall clock.
        assert all(r["timestamp"] == own for t, r in step.outputs if t != "store")
        for r in step.stored:  # the original timestamp of the stored event is kept
            if r["event_id"] in step.mark_ids:  # a mark: the time of the input that caused it
                assert r["timestamp"] == own
            else:
                assert r["timestamp"] in timestamps[(step.thread_id, r["event_id"])]
        for r in step.starts:
            uuid.UUID(r["interaction_id"])
            key = (step.thread_id, r["cause_event_id"])
            assert derived.setdefault(key, r["interaction_id"]) == r["interaction_id"]
    # Distinct (thread, event id) pairs give distinct interaction ids.
    assert len(set(derived.values())) == len(derived)


# --- 4. terminal is terminal ----------------------------------------------------------------


def check_terminal_is_final(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    for step, model in walk(run):
        states = dict(model.states)
        for r in step.interactions:
            iid, previous = r["interaction_id"], states.get(r["interaction_id"])
            assert previous not in TERMINAL, f"{iid} left {previous} for {r['state']}: {r}"
            assert r["previous_state"] == previous
            assert r["state"] != previous
            states[iid] = r["state"]
        # The state agrees with what the interaction records announced.
        for interaction in step.after.interactions.values():
            assert states.get(interaction.id) == interaction.state
        assert set(i for i, s in states.items() if s not in TERMINAL) <= set(
            step.after.interactions
        )


def _user_input(event_id: str) -> dict[str, Any]:
    """A symbolic user_input of thread 0 with a given event id."""
    fields = {"event_id": event_id, "timestamp": records.TIMESTAMPS[0], "payload": {"m": 1}}
    return {"thread": 0, "type": "user_input", "fields": fields, "refs": {}}


def _complete_newest() -> dict[str, Any]:
    fields = {"timestamp": records.TIMESTAMPS[0], "command": "complete"}
    return {
        "thread": 0,
        "type": "command",
        "fields": fields,
        "refs": {"interaction_id": ("known", -1)},
    }


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="documented limit: interaction ids derive from (thread, event_id), so an explicit "
    "event_id re-sent after it left the dedupe window AND its interaction was purged starts "
    "that id again (README, Records); within the window, or while the interaction or its "
    "queued copy is known, it is a duplicate (tests below)",
)
@PROPERTY
@given(plans.scenarios())
# e1 starts X; e2 cancels X (interrupt) and the start purges it; e1 again (out of a window of 0)
# starts X again: cancelled -> active.
@example(
    {
        "settings": limits.make_limits(
            dedupe_window=0, default_policy="interrupt", auto_cleanup=True
        ),
        "threads": 1,
        "steps": [_user_input("e1"), _user_input("e2"), _user_input("e1")],
    }
)
def test_no_interaction_leaves_a_terminal_state(scenario: dict[str, Any]) -> None:
    check_terminal_is_final(scenario)


@PROPERTY
@given(plans.scenarios(dedupe_window=st.just(1000)))
def test_no_interaction_leaves_a_terminal_state_within_dedupe_window(
    scenario: dict[str, Any],
) -> None:
    """The same property when no explicit event id can fall out of the dedupe window."""
    check_terminal_is_final(scenario)


# --- 5. the queue ---------------------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_queue_is_fifo_bounded_and_drained_when_idle(scenario: dict[str, Any]) -> None:
    run, cfg = execute(scenario), scenario["settings"]
    for step, model in walk(run):
        outcome = step.outcome
        if outcome["status"] == "queued":
            _, _, depth = model.effective(step.value, cfg)
            assert model.nonterminal(), "queued while idle"
            assert outcome["queue_position"] == len(model.queue) + 1
            assert len(model.queue) + 1 <= depth
            assert not step.stored and not step.interactions  # stored only when it starts
        if outcome["status"] != "started":
            # Any start now is the oldest queued event: announced by its store record and its
            # interaction record (cause = its event id), with no outcome of its own.
            assert len(step.starts) <= 1
            for start in step.starts:
                assert model.queue, f"started from an empty queue: {start}"
                assert start["cause_event_id"] == model.queue[0]
                stored = [r for r in step.stored if r["event_id"] == model.queue[0]]
                assert [r["interaction_id"] for r in stored] == [start["interaction_id"]]
        model.observe(step)
        assert [q.event_id for q in step.after.queue] == model.queue
        if not model.nonterminal():
            assert model.queue == [] and not step.after.busy
        assert not step.after.queue or step.after.busy


# --- 6. determinism -------------------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_output_is_a_pure_function_of_the_input(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    fed = encoded([o for step in run.steps for o in step.outputs])
    first = encoded(replay(run.values, run.settings))
    second = encoded(replay([dict(v) for v in run.values], run.settings))
    positioned = encoded(replay([(0, i, v) for i, v in enumerate(run.values)], run.settings))
    assert first == second == positioned == fed


@PROPERTY
@given(plans.scenarios())
def test_threads_are_independent(scenario: dict[str, Any]) -> None:
    """A thread's outputs do not depend on other threads' records (positions kept)."""
    run = execute(scenario)
    for thread_id in run.states:
        alone = replay(
            [(0, s.offset, s.value) for s in run.steps if s.thread_id == thread_id], run.settings
        )
        mixed = [o for s in run.steps if s.thread_id == thread_id for o in s.outputs]
        assert encoded(alone) == encoded(mixed)


# --- 7. replay safety -----------------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_reprocessing_from_the_saved_state_is_identical(scenario: dict[str, Any]) -> None:
    """7a: crash before the state was saved: the record is applied again to the old state."""
    run, cfg = execute(scenario), scenario["settings"]
    for step in run.steps:
        # `apply` left the state it was given untouched.
        if step.before is not None:
            assert step.before.to_bytes() == step.before_bytes
        saved = ThreadState.from_bytes(step.before_bytes) if step.before_bytes else None
        again, outputs = apply(saved, parse_input(step.value), position(cfg, step.offset), cfg)
        assert encoded(outputs) == encoded(step.outputs)
        assert again.to_bytes() == step.after.to_bytes()
        assert again == step.after


@PROPERTY
@given(plans.scenarios())
def test_rereading_an_applied_record_reemits_its_outputs(scenario: dict[str, Any]) -> None:
    """7b: crash after the state was saved, before the offset commit (maybe several records)."""
    run, cfg = execute(scenario), scenario["settings"]
    for step in run.steps:
        for state in (step.after, run.states[step.thread_id]):
            saved = state.to_bytes()
            stored = ThreadState.from_bytes(saved)
            new, outputs = apply(stored, parse_input(step.value), position(cfg, step.offset), cfg)
            assert encoded(outputs) == encoded(step.outputs)
            assert new.to_bytes() == saved
            assert stored.to_bytes() == saved


def check_duplicate(before: ThreadState, after: ThreadState, outputs: list[Output]) -> None:
    assert len(outputs) == 1, outputs
    assert outputs[0][0] == "outcomes" and outputs[0][1]["status"] == "duplicate", outputs
    assert after.interactions == before.interactions
    assert after.queue == before.queue
    assert after.seq == before.seq
    assert (after.policy, after.max_interactions, after.auto_cleanup) == (
        before.policy,
        before.max_interactions,
        before.auto_cleanup,
    )


@PROPERTY
@given(plans.scenarios())
def test_a_seen_event_id_at_another_position_is_a_duplicate(scenario: dict[str, Any]) -> None:
    """7c: in the stream, and injected at a new offset after the last record."""
    run, cfg = execute(scenario), scenario["settings"]
    models: dict[str, Model] = {}
    for step, model in walk(run):
        if step.explicit and model.expects_duplicate(step.event_id, cfg):
            assert step.before is not None
            check_duplicate(step.before, step.after, step.outputs)
        models[step.thread_id] = model
    offset = len(run.steps)
    for thread_id, model in models.items():
        state = run.states[thread_id]
        newest = list(state.interactions)[-1:] or ["x"]
        for event_id in explicit_ids_of(run, thread_id):
            if not model.expects_duplicate(event_id, cfg):
                continue
            for value in (
                {"type": "user_input", "payload": {"m": 1}, "concurrency": "interrupt"},
                {"type": "external_event", "kind": "webhook", "payload": 1},
                {"type": "command", "command": "cancel_all"},
                {"type": "command", "command": "complete", "interaction_id": newest[0]},
                {"type": "command", "command": "configure", "policy": "reject"},
            ):
                record = parse_input(
                    {
                        **value,
                        "thread_id": thread_id,
                        "event_id": event_id,
                        "timestamp": "2030-01-01T00:00:00Z",
                    }
                )
                after, outputs = apply(state, record, position(cfg, offset), cfg)
                check_duplicate(state, after, outputs)
                offset += 1


def explicit_ids_of(run: Run, thread_id: str) -> set[str]:
    return {s.event_id for s in run.steps if s.thread_id == thread_id and s.explicit}


# --- 8. state serialization -----------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_thread_state_round_trips(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    for step in run.steps:
        for state in (step.before, step.after):
            if state is None:
                continue
            data = state.to_bytes()
            back = ThreadState.from_bytes(data)
            assert back == state
            assert back.to_bytes() == data
            assert state.copy() == state
            # Format 1 (JSON), as states saved before format 2 are, still loads the same.
            assert_same_state(ThreadState.from_bytes(state.to_json_bytes()), state)


def assert_same_state(a: ThreadState, b: ThreadState) -> None:
    """Equal, the replay buffer compared by the outputs it repeats (packed or not)."""
    assert a.recent.keys() == b.recent.keys()
    for offset in a.recent:
        assert a.replay_outputs(offset) == b.replay_outputs(offset)
    assert replace(a, recent={}) == replace(b, recent={})


# --- output shapes --------------------------------------------------------------------------


@PROPERTY
@given(plans.scenarios())
def test_every_output_matches_the_output_models(scenario: dict[str, Any]) -> None:
    run = execute(scenario)
    for step in run.steps:
        for topic, record in step.outputs:
            if topic == "store":
                StoredEvent.model_validate(record)
                # The seed's field order, then seq and event_id.
                assert list(record) == ["type", *EVENT_FIELDS[record["type"]], "seq", "event_id"]
            else:
                assert topic == "outcomes"
                if record["type"] == "outcome":
                    Outcome.model_validate(record)
                    assert tuple(record) == OUTCOME_FIELDS
                else:
                    InteractionRecord.model_validate(record)
                    assert tuple(record)[: len(INTERACTION_FIELDS)] == INTERACTION_FIELDS
            # The json codec can write it (no NaN, no lone surrogate) and reads it back.
            assert CODEC.decode(CODEC.encode(record)) == record


@PROPERTY
@given(plans.scenarios())
def test_an_activation_carries_the_stored_event_that_caused_it(scenario: dict[str, Any]) -> None:
    """Contract, Executors: a start, resume or dequeue record carries its event; others none."""
    run = execute(scenario)
    for step in run.steps:
        for record in step.interactions:
            # A start (new or dequeued) or a resume by an event; a `resume` command stores none.
            caused_by_event = record["state"] == "active" and (
                record["previous_state"] is None or step.value["type"] != "command"
            )
            if not caused_by_event:
                assert record["event"] is None, record
                continue
            event = record["event"]
            assert event in step.stored, record
            assert event["interaction_id"] == record["interaction_id"]
            if record["previous_state"] is None:  # a start: the event is its cause
                assert event["event_id"] == record["cause_event_id"]


# --- routing: resume first, merge, append ---------------------------------------------------


def _kind_matches(wait_kind: Any, kind: Any) -> bool:
    if wait_kind is None or wait_kind == "*":
        return True
    return kind is not None and str(wait_kind).casefold() == str(kind).casefold()


@PROPERTY
@given(plans.scenarios())
def test_events_resume_merge_and_append_as_the_contract_says(scenario: dict[str, Any]) -> None:
    run, cfg = execute(scenario), scenario["settings"]
    for step, model in walk(run):
        value, outcome = step.value, step.outcome
        status, iid = outcome["status"], outcome["interaction_id"]
        known = step.before.interactions if step.before is not None else {}
        waiting: list[str] = []
        if value["type"] == "user_input":
            waiting = [i for i in model.order if model.states[i] == "waiting_user"]
        elif value["type"] == "external_event":
            waiting = [
                i
                for i in model.order
                if model.states[i] == "waiting_event"
                and _kind_matches(model.wait_kind.get(i), value["kind"])
            ]
        if status in ("duplicate", "invalid"):
            assert not step.stored and not step.interactions
        elif waiting:
            # Resume first: the newest matching waiting interaction becomes active.
            assert status == "resumed" and iid == waiting[-1]
            assert [r["interaction_id"] for r in step.stored][:1] == [iid]
            assert (step.interactions[0]["interaction_id"], step.interactions[0]["state"]) == (
                iid,
                "active",
            )
        else:
            assert status != "resumed"
        if status == "merged":
            assert model.effective(value, cfg)[0] == "merge"
            active = [i for i in model.order if model.states[i] == "active"]
            expected = value.get("expected_interaction_id")
            assert iid == (expected if expected is not None else active[-1])
            assert model.states[iid] == "active"
            assert [r["interaction_id"] for r in step.stored][:1] == [iid]
        if value["type"] in ("assistant_output", "artifact", "system_trace") and status not in (
            "duplicate",
        ):
            target = value.get("interaction_id")
            if target is not None:
                if target in known:
                    assert status == "appended" and iid == target
                    assert [(r["interaction_id"], r["seq"]) for r in step.stored] == [
                        (target, step.after.seq)
                    ]
                else:
                    assert status == "rejected"
                    assert outcome["reason"] == f"Interaction not found: {target}"
                    assert not step.stored
            elif value["type"] == "system_trace":
                assert status == "appended" and iid is None
        if value["type"] == "command" and value["command"] in plans.INTERACTION_COMMANDS:
            target = value["interaction_id"]
            if status != "duplicate":
                if target not in known:
                    assert status == "rejected"
                    assert outcome["reason"] == f"Interaction not found: {target}"
                elif known[target].terminal and value["command"] != "add_task":
                    # A transition out of a terminal state is refused (to the same state: either).
                    if TRANSITIONS[value["command"]] != known[target].state:
                        assert status == "rejected"
                        words = " and cannot be resumed" if value["command"] == "resume" else ""
                        assert outcome["reason"] == f"interaction '{target}' is terminal{words}"
                    assert not step.interactions
                else:
                    assert status == "applied"
        model.observe(step)
