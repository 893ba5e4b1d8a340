"""A record on another partition than its thread's is forwarded there, once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import Settings
from processors.core import Position, ThreadState
from processors.worker.handler import (
    FORWARDED_FROM,
    RecordHandler,
    forward,
    home_partition,
    origin_of,
)
from schemas.json_codec import JsonCodec

# Apache Kafka's UtilsTest.testMurmur2; the Java client's partition is
# Utils.toPositive(murmur2(key)) % partitions.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("partitions", [1, 7, 8, 50])
def test_a_threads_partition_is_the_java_clients(partitions: int) -> None:
    for key, murmur2 in JAVA_MURMUR2.items():
        assert home_partition(key, partitions) == (murmur2 & 0x7FFFFFFF) % partitions, key


@given(st.binary(min_size=1, max_size=40), st.integers(1, 64), st.integers(0, 63))
def test_only_records_away_from_home_are_forwarded(key: bytes, partitions: int, at: int) -> None:
    at %= partitions
    position = Position("events", at, 17)
    forwarded = forward(key, [("trace", b"1")], position, partitions)
    if home_partition(key, partitions) == at:
        assert forwarded is None
        return
    assert forwarded is not None
    home, headers = forwarded
    assert home == home_partition(key, partitions)
    assert headers[0] == ("trace", b"1")  # the producer's headers travel with it
    assert origin_of(headers) == f"events:{at}:17"
    # Forwarded once: wherever it lands, it is handled there.
    assert forward(key, headers, Position("events", (home + 1) % partitions, 3), partitions) is None


def test_records_without_a_key_stay_where_they_are() -> None:
    assert forward(None, [], Position("events", 3, 0), 8) is None


def test_a_forwarded_record_keeps_the_identity_of_where_it_was_first_read() -> None:
    """A second copy (an at-least-once forward repeated after a crash) is a duplicate."""
    handler = RecordHandler(Settings.model_construct())
    value = JsonCodec().encode(
        {
            "type": "user_input",
            "thread_id": "t1",
            "payload": "hi",
            "timestamp": "2026-12-01T10:00:00Z",
        }
    )
    states: dict[str, ThreadState] = {}

    def handle(offset: int) -> dict[str, object]:
        handled = handler.handle(
            b"t1", value, Position("events", 0, offset), states.get, origin="events:3:9"
        )
        assert handled.state is not None
        states["t1"] = handled.state
        [outcome] = [
            JsonCodec().decode(r.value or b"")
            for r in handled.records
            if b'"outcome"' in (r.value or b"")
        ]
        return outcome

    first, second = handle(5), handle(6)
    assert (first["status"], first["source_event_id"]) == ("started", "events:3:9")
    assert second["status"] == "duplicate"


def test_forwarded_from_header_name_is_stable() -> None:
    assert FORWARDED_FROM == "orchestral-forwarded-from"
