"""`orchestral-stream executor MODULE:FUNCTION`: a wrong name is one clear line and exit 64."""

from __future__ import annotations

import pytest

from processors import exit_codes
from processors.cli import main
from processors.executor import load_handler
from processors.executor.loading import HandlerNotFound


def test_an_async_function_loads() -> None:
    from tests.support import agents

    assert load_handler("tests.support.agents:echo") is agents.echo


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("no-colon", "expected MODULE:FUNCTION"),
        ("no_such_module_x:run", "cannot import 'no_such_module_x'"),
        ("tests.support.agents:missing", "has no 'missing'"),
        ("tests.support.agents:note", "must be an async function"),
    ],
)
def test_a_wrong_name_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(HandlerNotFound, match=says):
        load_handler(spec)


def test_the_command_exits_64_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["executor", "tests.support.agents:missing"]) == exit_codes.USAGE
    err = capsys.readouterr().err
    assert err.startswith("orchestral-stream executor: ") and len(err.splitlines()) == 1
