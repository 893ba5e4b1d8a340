"""A realistic, deterministic input workload: conversations on many threads.

The mix the issues specify: 60% user input, 30% executor commands, 10% executor output, with
payloads of about `payload_bytes`. Event ids are explicit, so the interaction a user input
starts is known in advance (`ids.interaction_id`), and commands can address it.
"""

from __future__ import annotations

import random
from typing import Any

from processors.core import ids

COMMANDS = ["wait_user", "complete", "add_task", "wait_event", "pause", "resume", "fail", "cancel"]
COMMAND_WEIGHTS = [20, 25, 15, 8, 5, 12, 5, 5]
POLICIES = ["interrupt", "queue", "merge", "parallel", "reject", "rollback"]
OUTPUT_TYPES = ["assistant_output", "artifact", "system_trace"]


def timestamp(n: int) -> str:
    """n milliseconds after a fixed instant, in the canonical form."""
    seconds, millis = divmod(n, 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    fraction = f".{millis:03d}" if millis else ""
    return f"2026-11-{1 + days % 28:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}Z"


def generate(
    records: int,
    threads: int,
    *,
    seed: int = 7,
    payload_bytes: int = 300,
    configure_rate: float = 0.01,
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    last: dict[str, str] = {}  # thread -> id of the interaction its last user input started
    text = "x" * payload_bytes
    out: list[dict[str, Any]] = []
    for n in range(records):
        thread_id = f"thread-{rng.randrange(threads)}"
        event_id = f"{thread_id}:e{n}"
        base: dict[str, Any] = {
            "thread_id": thread_id,
            "event_id": event_id,
            "timestamp": timestamp(n),
        }
        roll = rng.random()
        if roll < configure_rate:
            out.append(
                {**base, "type": "command", "command": "configure", "policy": rng.choice(POLICIES)}
            )
        elif roll < 0.6 or thread_id not in last:
            out.append(
                {
                    **base,
                    "type": "user_input",
                    "payload": {
                        "message": text[: rng.randrange(payload_bytes // 2, payload_bytes)]
                    },
                }
            )
            last[thread_id] = ids.interaction_id(thread_id, event_id)
        elif roll < 0.9:
            out.append(_command(rng, base, last[thread_id]))
        else:
            out.append(_output(rng, base, last[thread_id], text))
    return out


def _command(rng: random.Random, base: dict[str, Any], iid: str) -> dict[str, Any]:
    name = rng.choices(COMMANDS, COMMAND_WEIGHTS)[0]
    record = {**base, "type": "command", "command": name, "interaction_id": iid}
    if name == "add_task":
        record["task_id"] = f"task-{base['event_id']}"
    if name == "wait_event":
        record["kind"] = rng.choice(["webhook", "timer"])
    return record


def _output(rng: random.Random, base: dict[str, Any], iid: str, text: str) -> dict[str, Any]:
    kind = rng.choice(OUTPUT_TYPES)
    record: dict[str, Any] = {**base, "type": kind, "interaction_id": iid}
    if kind == "artifact":
        record["reference_id"] = f"ref-{base['event_id']}"
    else:
        record["payload"] = {"message": text[:120]}
        if kind == "system_trace":
            record["level"] = "info"
    return record
