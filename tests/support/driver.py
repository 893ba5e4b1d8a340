"""A test driver for the core: feeds records one at a time, like the worker, and reads outputs."""

from __future__ import annotations

from typing import Any

from processors.core import OUTCOMES, STORE, Limits, Output, Position, ThreadState, process_value

T0 = "2026-11-24T06:00:00Z"


def ts(n: int) -> str:
    return f"2026-11-24T06:{n // 60 % 60:02d}:{n % 60:02d}Z"


class Driver:
    def __init__(self, **overrides: Any) -> None:
        self.limits = Limits(**overrides)
        self.states: dict[str, ThreadState] = {}
        self.offset = 0
        self.log: list[Output] = []

    def send(self, record: dict[str, Any]) -> list[Output]:
        record = {"timestamp": ts(self.offset), **record}
        position = Position(self.limits.events_topic, 0, self.offset)
        self.offset += 1
        outputs = process_value(self.states, record, position, self.limits)
        self.log.extend(outputs)
        return outputs

    def event(self, type_: str = "user_input", thread: str = "t1", **fields: Any) -> dict[str, Any]:
        """Send an event (payload defaults to a message) and return its outcome."""
        record: dict[str, Any] = {"type": type_, "thread_id": thread, **fields}
        if type_ in ("user_input", "assistant_output", "external_event", "system_trace"):
            record.setdefault("payload", {"message": f"m{self.offset}"})
        defaults = {"external_event": ("kind", "webhook"), "system_trace": ("level", "info")}
        defaults["artifact"] = ("reference_id", "ref-1")
        if type_ in defaults:
            record.setdefault(*defaults[type_])
        return outcome_of(self.send(record))

    def command(
        self, name: str, iid: str | None = None, thread: str = "t1", **fields: Any
    ) -> dict[str, Any]:
        record = {
            "type": "command",
            "command": name,
            "thread_id": thread,
            "interaction_id": iid,
            **fields,
        }
        return outcome_of(self.send(record))

    def state(self, thread: str = "t1") -> ThreadState:
        return self.states[thread]

    def states_of(self, thread: str = "t1") -> dict[str, str]:
        return {i.id: i.state for i in self.state(thread).interactions.values()}


def outcome_of(outputs: list[Output]) -> dict[str, Any]:
    outcomes = [r for t, r in outputs if t == OUTCOMES and r["type"] == "outcome"]
    assert len(outcomes) == 1, outputs
    return outcomes[0]


def stored(outputs: list[Output]) -> list[dict[str, Any]]:
    return [r for t, r in outputs if t == STORE]


def interaction_records(outputs: list[Output]) -> list[dict[str, Any]]:
    return [r for t, r in outputs if t == OUTCOMES and r["type"] == "interaction"]
