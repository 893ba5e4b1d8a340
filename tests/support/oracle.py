"""The oracle of the integration tests: the committed input read back and run through the
worker's own pure logic, compared with what the worker wrote."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from devtools.deployment import Deployment, read_all
from processors.core import Output, Position, ThreadState
from processors.worker.handler import RecordHandler
from schemas.codec import output_decoder
from schemas.json_codec import JsonCodec


async def oracle(deployment: Deployment) -> list[Output]:
    """Read the committed input back and run the worker's own pure logic over it in memory."""
    settings = deployment.settings
    handler = RecordHandler(settings, JsonCodec())
    states: dict[str, ThreadState] = {}
    decoder = output_decoder()
    outputs: list[Output] = []
    kinds = {settings.store_topic: "store", settings.outcomes_topic: "outcomes"}
    for partition, offset, key, value, _ in await read_all(
        deployment.bootstrap, settings.events_topic
    ):
        position = Position(settings.events_topic, partition, offset)
        handled = handler.handle(key, value, position, states.get, committed_offset=offset)
        if handled.state is not None and handled.thread_id is not None:
            states[handled.thread_id] = handled.state
        outputs.extend(
            (kinds[r.topic], decoder.decode_value(r.value))
            for r in handled.records
            if r.topic in kinds and r.value is not None
        )
    return outputs


@dataclass
class Comparison:
    expected: int = 0
    seen: int = 0
    identical_duplicates: int = 0
    lost: list[Any] = field(default_factory=list)
    unexpected: list[Any] = field(default_factory=list)
    misordered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexpected or self.misordered)

    def summary(self) -> str:
        return (
            f"expected {self.expected}, seen {self.seen}, identical duplicates "
            f"{self.identical_duplicates}, lost {len(self.lost)}, mismatched "
            f"{len(self.unexpected)}, misordered threads {len(self.misordered)}"
        )


def compare(expected: list[Output], actual: list[Output]) -> Comparison:
    """Per thread and topic: `actual`, first occurrences only, equals `expected` in order;
    every other record of `actual` is an identical copy of one before it."""
    result = Comparison(expected=len(expected), seen=len(actual))
    want = _by_thread(expected)
    got = _by_thread(actual)
    for key in want.keys() | got.keys():
        firsts: list[str] = []
        seen: set[str] = set()
        for record in got.get(key, []):
            if record in seen:
                result.identical_duplicates += 1
            else:
                seen.add(record)
                firsts.append(record)
        expected_list = want.get(key, [])
        expected_set = set(expected_list)
        result.lost.extend(r for r in expected_list if r not in seen)
        result.unexpected.extend(r for r in firsts if r not in expected_set)
        # An `invalid` outcome may come from a record keyed to another partition (key !=
        # thread_id): it has no order relative to the thread's own records.
        if (
            _ordered(firsts) != _ordered(expected_list)
            and not result.lost
            and not result.unexpected
        ):
            result.misordered.append(str(key))
    return result


def _ordered(records: list[str]) -> list[str]:
    return [r for r in records if '"status":"invalid"' not in r]


def _by_thread(outputs: list[Output]) -> dict[tuple[str, str], list[str]]:
    codec = JsonCodec()
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for topic, value in outputs:
        grouped[(topic, value["thread_id"])].append(codec.encode(value).decode())
    return grouped


async def worker_outputs(deployment: Deployment) -> list[Output]:
    decoder = output_decoder()
    outputs: list[Output] = []
    for kind in ("store", "outcomes"):
        for _, _, _, value, _ in await read_all(deployment.bootstrap, f"{deployment.name}.{kind}"):
            outputs.append((kind, decoder.decode_value(value)))
    return outputs


async def wait_for_outcomes(
    deployment: Deployment, expected: list[Output], timeout: float
) -> list[Output]:
    """Poll the output topics until every expected record is there (or time runs out)."""
    deadline = time.monotonic() + timeout
    want = len({JsonCodec().encode(v) for _, v in expected})
    actual: list[Output] = []
    while time.monotonic() < deadline:
        actual = await worker_outputs(deployment)
        if len({JsonCodec().encode(v) for _, v in actual}) >= want:
            return actual
        await asyncio.sleep(1.0)
    return actual


def _asserted(result: Comparison, duplicates_allowed: bool) -> Comparison:
    assert result.ok, (
        result.summary() + "\n" + "\n".join(map(str, (result.lost + result.unexpected)[:5]))
    )
    if not duplicates_allowed:  # a clean run re-emits nothing
        assert result.identical_duplicates == 0, result.summary()
    return result


async def check_against_oracle(
    deployment: Deployment, *, timeout: float = 120, duplicates_allowed: bool = False
) -> Comparison:
    """Compare the worker's output with the oracle over everything in the input topic.

    The input can still grow while the worker settles: its deadline timer produces `expire`
    commands (for the workload's logical timestamps, long past, at once). Output the oracle did
    not expect is read again with the input until both agree, or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        expected = await oracle(deployment)
        actual = await wait_for_outcomes(
            deployment, expected, max(1.0, deadline - time.monotonic())
        )
        result = compare(expected, actual)
        if result.ok or not result.unexpected or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    return _asserted(result, duplicates_allowed)
