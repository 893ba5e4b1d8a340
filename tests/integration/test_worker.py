"""The worker end to end, against a real broker: its output must equal `replay` of its input."""

from __future__ import annotations

import asyncio

import pytest

from devtools.deployment import Deployment, encode_inputs, produce, read_all
from devtools.workload import generate
from tests.support.oracle import check_against_oracle

pytestmark = pytest.mark.integration


def scenario_records() -> list[dict[str, object]]:
    """The seed scenarios for every policy, resume, queue drain, every command, appends."""
    records: list[dict[str, object]] = []
    n = 0

    def add(**r: object) -> str:
        nonlocal n
        n += 1
        eid = f"s{n}"
        records.append(
            {"event_id": eid, "timestamp": f"2026-11-24T06:00:{n % 60:02d}.{n:03d}Z", **r}
        )
        return eid

    from processors.core.ids import interaction_id as iid

    for policy in ("interrupt", "reject", "parallel", "merge", "queue", "rollback"):
        t = f"policy-{policy}"
        add(type="command", command="configure", thread_id=t, policy=policy)
        first = add(type="user_input", thread_id=t, payload={"message": "one"})
        add(type="user_input", thread_id=t, payload={"message": "two"})
        add(type="command", command="complete", thread_id=t, interaction_id=iid(t, first))
        add(type="user_input", thread_id=t, payload={"message": "three"})
    t = "commands"
    a = add(type="user_input", thread_id=t, payload="start")
    for command in ("add_task", "wait_user", "resume", "pause", "resume", "wait_event"):
        add(
            type="command",
            command=command,
            thread_id=t,
            interaction_id=iid(t, a),
            task_id="k1",
            kind="webhook",
        )
    add(type="external_event", thread_id=t, kind="webhook", payload={"hook": 1})  # resumes
    add(type="assistant_output", thread_id=t, interaction_id=iid(t, a), payload={"message": "hi"})
    add(type="artifact", thread_id=t, interaction_id=iid(t, a), reference_id="r1")
    add(type="system_trace", thread_id=t, level="info", payload={"k": "v"})
    add(type="command", command="wait_user", thread_id=t, interaction_id=iid(t, a))
    add(type="user_input", thread_id=t, payload="reply")  # resumes
    add(type="command", command="fail", thread_id=t, interaction_id=iid(t, a))
    add(type="command", command="resume", thread_id=t, interaction_id=iid(t, a))  # terminal
    add(type="command", command="cancel_all", thread_id=t)
    add(type="assistant_output", thread_id=t, interaction_id="unknown", payload=1)
    add(
        type="user_input", thread_id=t, payload="dup", event_id="s1"
    )  # duplicate of s1? other thread
    return records


BAD_RECORDS: list[tuple[bytes | None, bytes | None, str]] = [
    (b"t-bad", b"\xff\xfe garbage", "unknown encoding"),
    (b"t-bad", b'{"type":"user_input","thread_id":"t-bad"', "not valid JSON"),
    (b"t-bad", b"\x00\x00\x00\x00\x07\x01", "schema"),
    (
        b"t-bad",
        b'{"type":"nope","thread_id":"t-bad","timestamp":"2026-11-24T06:00:00Z"}',
        "unknown variant",
    ),
    (
        b"t-bad",
        b'{"type":"user_input","thread_id":"t-bad","timestamp":"2026-11-24T06:00:00Z"}',
        "missing field `payload`",
    ),
    (
        b"other",
        b'{"type":"user_input","thread_id":"t-bad","payload":1,"timestamp":"2026-11-24T06:00:00Z"}',
        "does not match thread_id",
    ),
    (
        b"t-bad",
        b'{"type":"user_input","thread_id":"t-bad","payload":1,"timestamp":12}',
        "timestamp",
    ),
    (b"t-bad", None, "tombstone"),
]


async def run_and_compare(deployment: Deployment, records: list[dict[str, object]]) -> None:
    """Produce `records` and compare the worker's output with `replay` of the input topic:
    the records and the `expire` commands the deadline timer adds (the scenarios' logical time
    is long past, so they can land before the records' own outputs are all read)."""
    await produce(deployment.bootstrap, deployment.settings.events_topic, encode_inputs(records))
    await check_against_oracle(deployment)


def test_scenarios_and_bad_input_match_replay(deployment: Deployment) -> None:
    worker = deployment.worker().start()
    records = scenario_records()
    asyncio.run(run_and_compare(deployment, records))
    # Bad input of every class, between valid records: DLQ'd with its reason, the rest goes on.
    settings = deployment.settings
    valid = encode_inputs(generate(300, 10, seed=3))
    mixed = [(k, v) for k, v, _ in BAD_RECORDS]
    for i, record in enumerate(valid):
        mixed.insert(i * (len(mixed) + 1) // len(valid), record)
    asyncio.run(produce(deployment.bootstrap, settings.events_topic, mixed))
    asyncio.run(check_against_oracle(deployment))
    dlq = asyncio.run(read_all(deployment.bootstrap, settings.dlq_topic))
    assert len(dlq) == len(BAD_RECORDS)
    by_value = {(key, value): dict(headers) for _, _, key, value, headers in dlq}
    for key, value, reason in BAD_RECORDS:
        headers = by_value[(key, value)]
        assert reason.encode() in headers["error"], (reason, headers["error"])
        assert headers["source_topic"] == settings.events_topic.encode()
        assert {"source_partition", "source_offset"} <= headers.keys()
    assert worker.alive() and worker.starts == 1
