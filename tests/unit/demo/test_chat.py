"""`orchestral-stream chat`: what each record of the thread prints (no broker)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from processors import cli, exit_codes
from processors.chat import (
    InOrder,
    Transcript,
    interaction_line,
    outcome_line,
    policy_name,
    short_id,
    store_line,
    user_input,
)
from processors.cli_errors import UsageError

IID = "3f2a9c1e-0000-5000-8000-000000000000"
OTHER = "b7c41d2e-0000-5000-8000-000000000000"


def outcome(status: str, source: str = "e1", **fields: Any) -> dict[str, Any]:
    return {"type": "outcome", "source_event_id": source, "status": status, **fields}


def interaction(state: str, previous: str | None, iid: str = IID, **fields: Any) -> dict[str, Any]:
    record = {"type": "interaction", "interaction_id": iid, "state": state}
    return {**record, "previous_state": previous, "cause_event_id": "e1", **fields}


def output(text: str, iid: str = IID) -> dict[str, Any]:
    return {"type": "assistant_output", "interaction_id": iid, "payload": {"content": text}}


def test_ids_are_shortened_to_four_characters() -> None:
    assert short_id(IID) == "3f2a…"
    assert short_id(None) == "-"


def test_outcome_lines() -> None:
    assert outcome_line(outcome("merged", interaction_id=IID)) == "· merged into 3f2a…"
    assert outcome_line(outcome("queued", queue_position=2)) == "· queued (position 2)"
    busy = outcome("rejected", reason="System is busy processing another request")
    assert outcome_line(busy) == "· rejected: System is busy processing another request"
    assert outcome_line(outcome("duplicate")) == "· duplicate: already sent"
    # Left to the interaction records, which also announce a start from the queue.
    assert outcome_line(outcome("started", interaction_id=IID)) is None
    assert outcome_line(outcome("resumed", interaction_id=IID)) is None


def test_interaction_lines() -> None:
    assert interaction_line(interaction("active", None)) == "· started 3f2a…"
    queued = interaction_line(interaction("active", None), was_queued=True)
    assert queued == "· started 3f2a… (from the queue)"
    done = interaction_line(interaction("completed", "active"))
    assert done == "· interaction 3f2a… active → completed"
    late = interaction_line(interaction("failed", "active", reason="run_timeout"))
    assert late == "· interaction 3f2a… active → failed (run_timeout)"
    undone = interaction_line(interaction("cancelled", "active", rolled_back=True))
    assert undone == "· interaction 3f2a… active → cancelled (rolled back)"


def test_store_lines() -> None:
    mark = {
        "type": "system_trace",
        "interaction_id": None,
        "level": "info",
        "payload": {"category": "runtime_lifecycle", "event_type": "turn_rolled_back"},
    }
    mark["payload"]["interaction_id"] = IID
    assert store_line(mark) == "· turn rolled back 3f2a…"
    expired = {**mark, "payload": {"event_type": "thread_expired", "interaction_id": None}}
    assert store_line(expired) == "· thread expired"
    trace = {"type": "system_trace", "interaction_id": IID, "level": "debug", "payload": "x" * 200}
    line = store_line(trace)
    assert line is not None and line.startswith("· trace 3f2a… debug: xxx") and len(line) < 110
    artifact = {"type": "artifact", "interaction_id": IID, "reference_id": "ref-1"}
    assert store_line(artifact) == "· artifact ref-1 (3f2a…)"
    other = {"type": "user_input", "interaction_id": IID, "payload": {"message": "hi"}}
    assert store_line(other) == "· someone else: hi"


def test_words_stream_inline_and_lines_break_them() -> None:
    t = Transcript()
    t.sent("e1")
    printed = [
        t.render("outcomes", interaction("active", None)),
        t.render("outcomes", outcome("started", interaction_id=IID)),
        t.render("store", output("Hello ")),
        t.render("store", output("there. ")),
        t.render("outcomes", outcome("appended", "exec:1", interaction_id=IID)),
        t.render("outcomes", interaction("completed", "active")),
    ]
    assert "".join(printed) == (
        "· started 3f2a…\nagent 3f2a…: Hello there. \n· interaction 3f2a… active → completed\n"
    )
    assert t.end() == ""


def test_another_interactions_words_start_their_own_line() -> None:
    t = Transcript()
    text = t.render("store", output("one ")) + t.render("store", output("two ", OTHER))
    assert text == "agent 3f2a…: one \nagent b7c4…: two "
    assert t.end() == "\n" and t.end() == ""


def test_after_the_user_pressed_enter_the_words_continue_with_their_prefix() -> None:
    t = Transcript()
    t.render("store", output("one "))
    t.line_start()  # the terminal echoed the user's line and its newline
    assert t.render("store", output("two ")) == "agent 3f2a…: two "


def test_only_our_own_outcomes_are_shown_and_our_input_is_not_repeated() -> None:
    t = Transcript()
    t.sent("mine")
    mine = {"type": "user_input", "event_id": "mine", "payload": {"message": "hi"}}
    assert t.render("store", mine) == ""
    assert t.render("outcomes", outcome("rejected", "exec:x", reason="Interaction not found")) == ""
    assert t.render("outcomes", outcome("queued", "mine", queue_position=1)) == (
        "· queued (position 1)\n"
    )
    start = interaction("active", None, cause_event_id="mine")
    assert t.render("outcomes", start) == "· started 3f2a… (from the queue)\n"


def test_busy_until_every_input_is_answered_and_every_interaction_is_over() -> None:
    t = Transcript()
    assert not t.busy
    t.sent("e1")
    assert t.busy
    t.render("outcomes", interaction("active", None))
    t.render("outcomes", outcome("started", interaction_id=IID))
    assert t.busy
    t.render("outcomes", interaction("completed", "active"))
    assert not t.busy


def test_user_input_records() -> None:
    plain = user_input("demo", "hi", None)
    assert plain["payload"] == {"message": "hi"} and "concurrency" not in plain
    assert plain["type"] == "user_input" and plain["thread_id"] == "demo" and plain["event_id"]
    assert user_input("demo", "hi", "merge")["concurrency"] == "merge"


def test_policy_names_and_aliases() -> None:
    assert policy_name("steer") == "merge"
    assert policy_name("queue") == "queue"
    with pytest.raises(UsageError, match="unknown policy 'bogus' \\(one of interrupt"):
        policy_name("bogus")


def test_a_bad_policy_flag_is_a_usage_error_before_connecting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = cli.main(["chat", "demo", "--policy", "bogus"])
    err = capsys.readouterr().err
    assert code == exit_codes.USAGE
    assert err.startswith("orchestral-stream chat: unknown policy 'bogus'")
    assert len(err.splitlines()) == 1


def test_no_broker_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("ORCHESTRAL_CONNECT_TIMEOUT", "1")
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    code = cli.main(["chat", "demo"])
    out, err = capsys.readouterr()
    assert code == exit_codes.UNREACHABLE
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("orchestral-stream chat: ")
    assert out == ""


def test_records_are_put_back_in_the_order_they_were_written() -> None:
    in_order = InOrder(hold=0.2)
    done = interaction("completed", "active")
    in_order.add(1002, "outcomes", done, arrived=10.0)  # its partition's batch came first
    assert in_order.due(10.1) == []
    in_order.add(1001, "store", output("last "), arrived=10.15)
    in_order.add(1002, "store", output("words "), arrived=10.15)  # same ms: the store first
    assert in_order.due(10.25) == []  # the oldest written is not held long enough yet
    assert in_order.due(10.35) == [
        ("store", output("last ")),
        ("store", output("words ")),
        ("outcomes", done),
    ]
    assert in_order.due(99) == []
