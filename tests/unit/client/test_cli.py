"""The CLI in-process, with no broker: bad input is one line on stderr and a documented code.

The cluster address is a closed port: a command that tried to connect before refusing its input
would exit 2 (unreachable) instead of the code asserted.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors import cli, exit_codes
from processors.core.runtime import NULL_PAYLOAD_REASON

Capture = pytest.CaptureFixture[str]
README = Path(__file__).resolve().parents[3] / "README.md"


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ORCHESTRAL_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("ORCHESTRAL_CONNECT_TIMEOUT", "1")


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str | None = None,
) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The single stderr line of a failure (no traceback, no log spam)."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_stdin_without_thread_id_says_which_field(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = json.dumps({"type": "user_input", "payload": {"message": "hi"}})
    code, out, err = run(capsys, monkeypatch, "send", stdin=record + "\n")
    assert code == exit_codes.DATA_ERROR
    assert one_line(err) == "orchestral-stream send: stdin line 1: missing field `thread_id`"
    assert out == ""


def test_bad_payload_json_is_a_usage_error(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "send", "--thread", "t", "--payload", "{bad")
    assert code == exit_codes.USAGE
    assert one_line(err).startswith("orchestral-stream send: --payload is not JSON: ")


def test_a_json_array_on_stdin_is_refused(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, monkeypatch, "send", stdin="[1, 2]\n")
    assert code == exit_codes.DATA_ERROR
    assert one_line(err).endswith("stdin line 1: a record is a JSON object, got list")


def test_a_line_that_is_not_json_is_named(capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    good = json.dumps({"type": "user_input", "thread_id": "t", "payload": 1})
    code, _, err = run(capsys, monkeypatch, "send", stdin=f"{good}\n\n{{oops\n")
    assert code == exit_codes.DATA_ERROR
    assert "stdin line 3 is not JSON" in one_line(err)


def test_a_bad_record_anywhere_means_nothing_is_sent(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = json.dumps({"type": "user_input", "thread_id": "t", "payload": 1})
    bad = json.dumps({"type": "user_input", "thread_id": "t", "payload": None})
    code, out, err = run(capsys, monkeypatch, "send", stdin=f"{good}\n{bad}\n")
    # Refused before connecting: a connection attempt would have been exit 2.
    assert code == exit_codes.DATA_ERROR
    assert one_line(err) == f"orchestral-stream send: stdin line 2: {NULL_PAYLOAD_REASON}"
    assert out == ""


def test_a_payload_over_the_limit_names_the_setting(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = json.dumps({"type": "user_input", "thread_id": "t", "payload": "a" * 2_000_000})
    code, _, err = run(capsys, monkeypatch, "send", stdin=big)
    assert code == exit_codes.DATA_ERROR
    assert "over ORCHESTRAL_MAX_INPUT_BYTES=1000000" in one_line(err)


@pytest.mark.parametrize("stdin", ["", "\n  \n"])
def test_empty_stdin_says_nothing_was_sent(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, stdin: str
) -> None:
    code, out, err = run(capsys, monkeypatch, "send", stdin=stdin)
    assert code == exit_codes.NO_INPUT
    assert "nothing sent" in one_line(err)
    assert out == ""


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ORCHESTRAL_LOG_LEVEL", "verbose", "ORCHESTRAL_LOG_LEVEL: Input should be"),
        ("KAFKA_BOOTSTRAP_SERVERS", "", "KAFKA_BOOTSTRAP_SERVERS: '' is not host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "nonsense", "KAFKA_BOOTSTRAP_SERVERS: 'nonsense' is not host"),
    ],
)
def test_bad_settings_name_their_variable(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    for argv in (["send", "--thread", "t", "--text", "hi"], ["history", "t"], ["worker"]):
        code, _, err = run(capsys, monkeypatch, *argv)
        assert code == exit_codes.USAGE
        line = one_line(err)
        assert line.startswith(f"orchestral-stream {argv[0]}: invalid settings: {expected}")
        assert "ORCHESTRAL_KAFKA" not in line


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "--thread", "t", "--text", "hi", "--max-interactions", "3"],
        ["send", "--thread", "t", "--type", "command"],
        ["send", "--thread", "t", "--type", "user_input"],
        ["send", "--thread", "t", "--text", "a", "--payload", "1"],
        ["send", "--thread", "t", "--type", "artifact", "--text", "a", "--reference-id", "r"],
        ["send", "--thread", "t", "--text", "hi", "--command", "complete"],
        ["send", "--thread", "t", "--text", "hi", "--policy", "{nope"],
        ["send", "--thread", "t", "--type", "bogus"],
        ["send", "--thread", "t", "--text", "hi", "--timeout", "0"],
        [
            "send",
            "--thread",
            "t",
            "--type",
            "command",
            "--command",
            "configure",
            "--auto-cleanup",
            "maybe",
        ],
        ["history", "t", "--limit", "-1"],
        ["dlq", "--limit", "x"],
        ["nonsense"],
        [],
    ],
)
def test_usage_mistakes_are_one_line_and_64(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    code, _, err = run(capsys, monkeypatch, *argv)
    assert code == exit_codes.USAGE  # not argparse's 2, which means unreachable here
    assert one_line(err).startswith("orchestral-stream")


def test_records_the_worker_would_answer_invalid_are_refused(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, monkeypatch, "send", "--thread", "t", "--payload", "null")
    assert code == exit_codes.DATA_ERROR
    assert one_line(err) == f"orchestral-stream send: {NULL_PAYLOAD_REASON}"
    argv = ["send", "--thread", "t", "--type", "command", "--command", "complete"]
    code, _, err = run(capsys, monkeypatch, *argv)
    assert code == exit_codes.DATA_ERROR
    assert one_line(err) == "orchestral-stream send: command `complete` needs `interaction_id`"


def flags(*argv: str) -> dict[str, object]:
    return cli.record_from_flags(cli._parser().parse_args(["send", "--thread", "t", *argv]))


def test_every_documented_field_has_a_flag() -> None:
    event = flags(
        "--text", "hi", "--task-id", "k1", "--step-id", "s1", "--expected-interaction", "i1",
        "--policy", '{"name":"queue","max_queue_depth":3}', "--event-id", "e1",
        "--timestamp", "2026-12-01T10:00:00Z", "--interaction", "i0",
    )  # fmt: skip
    assert event == {
        "type": "user_input",
        "thread_id": "t",
        "concurrency": {"name": "queue", "max_queue_depth": 3},
        "payload": {"message": "hi"},
        "interaction_id": "i0",
        "task_id": "k1",
        "step_id": "s1",
        "expected_interaction_id": "i1",
        "event_id": "e1",
        "timestamp": "2026-12-01T10:00:00Z",
    }
    configure = flags(
        "--type", "command", "--command", "configure", "--policy", "reject",
        "--max-interactions", "3", "--auto-cleanup", "false",
    )  # fmt: skip
    assert configure == {
        "type": "command",
        "thread_id": "t",
        "command": "configure",
        "policy": "reject",
        "max_interactions_per_thread": 3,
        "auto_cleanup": False,
    }
    assert flags("--type", "system_trace", "--payload", "[1]")["level"] == "info"
    assert flags("--type", "artifact", "--reference-id", "r1")["reference_id"] == "r1"
    wait = flags(
        "--type", "command", "--command", "wait_event", "--interaction", "i", "--kind", "k"
    )
    assert wait["kind"] == "k"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=30)
@given(
    st.sampled_from(["send", "history", "thread", "tail", "dlq"]),
    st.lists(
        st.sampled_from(["--limit", "-1", "x", "--thread", "--max", "--wait", "{"]), max_size=4
    ),
)
def test_no_combination_of_flags_gives_a_traceback(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, command: str, words: list[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code = cli.main([command, *words])
    _, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err


def test_broker_help_shows_the_brokers_commands(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["broker", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert out.startswith("usage: orchestral-stream broker")
    assert "{start,stop,status}" in out and "--sasl-port" in out


def test_first_steps_show_the_thread_command() -> None:
    assert "orchestral-stream thread demo" in cli.FIRST_STEPS


def test_every_exit_code_is_in_the_readme_table() -> None:
    text = README.read_text()
    section = text[text.index("## Exit codes") :]
    codes = {value for name, value in vars(exit_codes).items() if name.isupper() and value != 0}
    for code in codes:
        assert re.search(rf"^\| `{code}` \|", section, re.MULTILINE), code
