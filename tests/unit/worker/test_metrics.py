"""processors/worker/metrics.py: what /metrics serves, the DLQ reason classes, the progress line."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from processors.core import Position, ThreadState
from processors.worker.handler import OutputTooLarge, RecordHandler
from processors.worker.metrics import (
    DEAD_LETTER_REASONS,
    IDLE_PROGRESS_INTERVAL,
    Metrics,
    dead_letter_reason,
)
from schemas.avro_codec import AvroCodec
from schemas.codec import InputDecoder
from schemas.errors import DecodeError
from tests.support.strategies.limits import make_settings

POSITION = Position("orchestral.events", 3, 42)
USER_INPUT = {
    "type": "user_input",
    "thread_id": "t-1",
    "interaction_id": "i-1",
    "payload": {"text": "hi"},
    "timestamp": "2026-01-01T00:00:00Z",
}


def value(m: Metrics, name: str, **labels: str) -> float:
    sample = m.registry.get_sample_value(name, labels)
    assert sample is not None, (name, labels)
    return sample


# --- counters and labels ----------------------------------------------------------------------


def test_outcomes_are_counted_by_status() -> None:
    m = Metrics(now=0)
    m.outcome("started")
    m.outcome("applied", 3)
    assert value(m, "orchestral_outcomes_total", status="started") == 1
    assert value(m, "orchestral_outcomes_total", status="applied") == 3
    assert value(m, "orchestral_outcomes_total", status="rejected") == 0


def test_unknown_outcome_statuses_share_one_label() -> None:
    m = Metrics(now=0)
    for i in range(50):
        m.outcome(f"thread-{i}")
    assert value(m, "orchestral_outcomes_total", status="other") == 50
    statuses = {
        s.labels["status"]
        for metric in m.registry.collect()
        if metric.name == "orchestral_outcomes"
        for s in metric.samples
    }
    assert statuses == {
        "started", "resumed", "merged", "queued", "rejected", "appended", "applied", "invalid",
        "duplicate", "other",
    }  # fmt: skip


def test_existing_and_new_plain_counters() -> None:
    m = Metrics(now=0)
    for name in ("records_in", "rerouted", "replay_missing"):
        m.count(name, 2)
        assert value(m, f"orchestral_{name}_total") == 2
    m.rebalance()
    assert value(m, "orchestral_rebalances_total") == 1


def test_batches_and_latency_are_histograms() -> None:
    m = Metrics(now=0)
    m.observe_batch(records=40, seconds=0.02)
    m.observe_batch(records=2, seconds=0.001)
    assert value(m, "orchestral_batch_records_count") == 2
    assert value(m, "orchestral_batch_records_sum") == 42
    assert value(m, "orchestral_batch_records_bucket", le="50.0") == 2
    assert value(m, "orchestral_batch_records_bucket", le="20.0") == 1
    assert value(m, "orchestral_batch_seconds_sum") == pytest.approx(0.021)
    m.observe_latency(1.5)
    m.observe_latency(-3.0)  # the producer's clock ahead of ours
    assert value(m, "orchestral_record_latency_seconds_count") == 2
    assert value(m, "orchestral_record_latency_seconds_sum") == 1.5
    assert value(m, "orchestral_record_latency_seconds_bucket", le="0.005") == 1


def test_lag_per_partition_and_total() -> None:
    m = Metrics(now=0)
    m.set_lag({0: 5, 1: 0, 2: 7})
    assert value(m, "orchestral_consumer_lag", partition="2") == 7
    assert value(m, "orchestral_consumer_total_lag") == 12
    assert m.last_lag == 12
    m.set_lag({1: 3})  # partitions 0 and 2 went to another worker
    assert m.registry.get_sample_value("orchestral_consumer_lag", {"partition": "0"}) is None
    assert value(m, "orchestral_consumer_total_lag") == 3
    m.set_lag(9)  # a plain total still works
    assert value(m, "orchestral_consumer_total_lag") == 9
    assert m.last_lag == 9


def test_process_and_python_collectors_are_served() -> None:
    page = generate_latest(Metrics(now=0).registry).decode()
    for name in ("process_cpu_seconds_total", "python_info", "python_gc_collections_total"):
        assert name in page


def test_two_workers_in_one_process_have_separate_registries() -> None:
    a, b = Metrics(now=0), Metrics(now=0)
    a.count("records_in")
    assert value(b, "orchestral_records_in_total") == 0


# --- DLQ reason classes, from the reasons the code really produces ----------------------------


def decoder_reason(data: bytes | None) -> str:
    with pytest.raises(DecodeError) as caught:
        InputDecoder().decode(data)
    return caught.value.reason


def avro(record: Mapping[str, object]) -> bytes:
    return AvroCodec().encode(record)


BAD_VALUES: list[tuple[bytes | None, str]] = [
    (None, "undecodable"),
    (b"", "undecodable"),
    (b"hello", "undecodable"),
    (b"{not json", "undecodable"),
    (b'{"a": "\xff"}', "undecodable"),
    (b'{"a": "\\ud800"}', "undecodable"),
    (b"\x00\x00\x00", "undecodable"),
    (b"\x00\x7f\xff\xff\xff\x02", "undecodable"),  # unknown schema id
    (avro(USER_INPUT)[:-3], "undecodable"),
    (avro(USER_INPUT) + b"\x00\x00", "undecodable"),
    (b'{"thread_id": "t"}', "unknown_type"),
    (b'{"type": "shout", "thread_id": "t"}', "unknown_type"),
    (json.dumps({**USER_INPUT, "interaction_id": 7}).encode(), "schema"),
    (json.dumps({k: v for k, v in USER_INPUT.items() if k != "payload"}).encode(), "schema"),
    (json.dumps({**USER_INPUT, "timestamp": "yesterday"}).encode(), "schema"),
    (json.dumps({"type": "command", "thread_id": "t", "command": "pause"}).encode(), "schema"),
]


@pytest.mark.parametrize(("data", "expected"), BAD_VALUES)
def test_decoder_reasons_are_classified(data: bytes | None, expected: str) -> None:
    reason = decoder_reason(data)
    assert dead_letter_reason(reason) == expected, reason


def test_handler_reasons_are_classified() -> None:
    handler = RecordHandler(make_settings())

    def error_header(key: bytes | None, data: bytes) -> str:
        handled = handler.handle(key, data, POSITION, lambda _: None)
        headers = dict(handled.records[0].headers or [])
        return headers["error"].decode()

    def load_fails(thread_id: str) -> ThreadState | None:
        raise RuntimeError("boom")

    value_ = json.dumps(USER_INPUT).encode()
    assert dead_letter_reason(error_header(b"t-2", value_)) == "key_mismatch"
    assert dead_letter_reason(error_header(None, value_)) == "key_mismatch"
    internal = handler.dead_letter_internal(b"t-1", value_, RuntimeError("boom"), POSITION)
    too_large = handler.dead_letter_internal(
        b"t-1", value_, OutputTooLarge("an output would be 9 bytes"), POSITION
    )
    for handled, expected in ((internal, "internal"), (too_large, "too_large")):
        reason = dict(handled.records[0].headers or [])["error"].decode()
        assert dead_letter_reason(reason) == expected, reason


def _edit(data: bytes, at: int, byte: int, cut: int) -> bytes:
    at %= len(data)
    return (data[:at] + bytes([byte]) + data[at + 1 :])[: len(data) - cut]


_AVRO = avro(USER_INPUT)
_FIELDS = st.sampled_from(
    ["type", "thread_id", "interaction_id", "payload", "timestamp", "command"]
)
_VALUES = (
    st.none() | st.integers() | st.text(max_size=8) | st.sampled_from(["user_input", "command"])
)
bad_inputs = (
    st.binary(max_size=64)
    | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(_FIELDS, _VALUES))
    | st.builds(_edit, st.just(_AVRO), st.integers(0, 200), st.integers(0, 255), st.integers(0, 4))
)


@settings(max_examples=500, deadline=None)
@given(bad_inputs)
@example(b'{"type":"command","command":null}')
def test_every_decoder_rejection_has_a_known_class(data: bytes) -> None:
    try:
        InputDecoder().decode(data)
    except DecodeError as exc:
        assert dead_letter_reason(exc.reason) not in ("other", "internal", "too_large"), exc.reason


def test_dead_letters_are_counted_by_class_only() -> None:
    m = Metrics(now=0)
    assert m.dead_letter("missing field `type`") == "unknown_type"
    assert m.dead_letter(b"key 'a' does not match thread_id 'b'") == "key_mismatch"
    assert m.dead_letter("something never seen, thread t-123") == "other"
    assert value(m, "orchestral_dead_letters_total", reason="unknown_type") == 1
    assert value(m, "orchestral_dead_letters_total", reason="other") == 1
    reasons = {
        s.labels["reason"]
        for metric in m.registry.collect()
        if metric.name == "orchestral_dead_letters"
        for s in metric.samples
    }
    assert reasons == set(DEAD_LETTER_REASONS)


# --- the progress line ------------------------------------------------------------------------


def test_progress_line_gives_rates_since_the_last_line_and_totals() -> None:
    m = Metrics(now=100.0)
    m.count("records_in", 12_340)
    m.count("outcomes_out", 12_300)
    m.count("store_out", 6_000)
    m.count("dlq_out", 2)
    m.set_lag({0: 1_500})
    line = m.progress_line(110.0)
    assert line == (
        "progress: records in 12,340 (1,234/s), outcomes out 12,300 (1,230/s), "
        "stored 6,000 (600/s), dead-lettered 2 (0.2/s), replayed 0, lag 1,500 "
        "(rates over the last 10 s)"
    )
    m.count("records_in", 50)
    m.count("outcomes_out", 50)
    line = m.progress_line(120.0)
    assert line is not None
    assert line.startswith(
        "progress: records in 12,390 (5.0/s), outcomes out 12,350 (5.0/s), stored 6,000 (0/s)"
    )


def test_progress_line_names_unusual_counts_only_when_they_happened() -> None:
    m = Metrics(now=0)
    m.count("records_in")
    assert "rerouted" not in (m.progress_line(10.0) or "")
    m.count("rerouted", 3)
    m.count("internal_errors")
    line = m.progress_line(20.0) or ""
    assert "rerouted 3" in line
    assert "internal errors 1" in line


def test_progress_line_is_quiet_while_idle_then_once_a_minute() -> None:
    m = Metrics(now=0)
    m.count("records_in")
    assert m.progress_line(10.0) is not None
    assert m.progress_line(20.0) is None
    assert m.progress_line(10.0 + IDLE_PROGRESS_INTERVAL - 1) is None
    line = m.progress_line(10.0 + IDLE_PROGRESS_INTERVAL)
    assert line == (
        "progress: records in 1, outcomes out 0, stored 0, dead-lettered 0, replayed 0, lag 0 "
        "(nothing handled in the last 60 s)"
    )
    assert m.progress_line(10.0 + IDLE_PROGRESS_INTERVAL + 10) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.set_lag({0: 4}),
        lambda m: m.outcome("queued"),
        lambda m: m.dead_letter("empty value"),
        lambda m: m.rebalance(),
    ],
)
def test_progress_line_speaks_when_anything_changes(change: object) -> None:
    m = Metrics(now=0)
    assert m.progress_line(IDLE_PROGRESS_INTERVAL) is not None
    assert m.progress_line(IDLE_PROGRESS_INTERVAL + 10) is None
    change(m)  # type: ignore[operator]
    assert m.progress_line(IDLE_PROGRESS_INTERVAL + 20) is not None


def test_progress_line_keeps_the_shape_log_readers_match() -> None:
    """`progress: records in N` is what tests/integration/test_reliability.py waits for."""
    m = Metrics(now=0)
    m.count("records_in", 1_234)
    assert re.match(r"progress: records in ([1-9]\d*)", m.progress_line(10.0) or "")


def test_progress_line_without_a_time_always_answers() -> None:
    m = Metrics()
    first, second = m.progress_line(), m.progress_line()
    assert first.startswith("progress: ")
    assert second.startswith("progress: ")
