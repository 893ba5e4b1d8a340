"""The chat demo's agent (processors/executor/demo.py) with a scripted turn (no broker)."""

from __future__ import annotations

from typing import Any

import pytest

from processors.executor import Message, demo


class ScriptedTurn:
    """What `reply` uses of a Turn; `steer_at[n]` arrives before the n-th `steers()` call."""

    def __init__(self, text: str, history: list[str], steer_at: dict[int, str]) -> None:
        self.text = text
        self.history = [message(i + 1, said) for i, said in enumerate(history)]
        self.steer_at = steer_at
        self.calls = 0
        self.said: list[str] = []

    def steers(self) -> list[Message]:
        self.calls += 1
        text = self.steer_at.get(self.calls)
        return [message(100 + self.calls, text)] if text else []

    async def say(self, text: str) -> None:
        self.said.append(text)


def message(seq: int, text: str, kind: str = "user_input") -> Message:
    event = {"type": kind, "seq": seq, "payload": {"message": text}}
    return Message(event, text)


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "WORD_SECONDS", 0)


async def run(text: str, history: list[str], steer_at: dict[int, str] | None = None) -> Any:
    turn = ScriptedTurn(text, history, steer_at or {})
    await demo.reply(turn)  # type: ignore[arg-type]
    return turn


async def test_a_first_message_is_answered_word_by_word() -> None:
    turn = await run("hello", [])
    assert "".join(turn.said) == (
        "You said “hello”. I see no earlier message from you. "
        "I answer slowly: interrupt, queue or steer me. In short: “hello”, noted."
    )
    assert 12 <= len(turn.said) <= 25  # a few seconds at WORD_SECONDS each


async def test_the_history_is_counted_and_the_previous_message_quoted() -> None:
    turn = await run("what next", ["hello", "and then a much longer message of many words here"])
    text = "".join(turn.said)
    assert "I see 2 earlier messages from you," in text
    assert "the last “and then a much longer message of many …”." in text


async def test_only_the_users_messages_count() -> None:
    turn = ScriptedTurn("hi", [], {})
    turn.history = [message(1, "earlier"), message(2, "Hi ", "assistant_output")]
    await demo.reply(turn)  # type: ignore[arg-type]
    assert "I see 1 earlier message from you, the last “earlier”." in "".join(turn.said)


async def test_a_steer_is_acknowledged_where_it_arrives_and_summed_up() -> None:
    turn = await run("hello", [], {4: "be brief"})
    assert turn.said[3] == "(ok, also: “be brief”) "
    assert turn.said[-1] == "In short: “hello”, and also “be brief”, noted."


async def test_a_steer_after_the_last_word_is_still_taken_in() -> None:
    words = len(demo.opening("hello", []))
    turn = await run("hello", [], {words + 1: "one more"})
    assert turn.said[-1] == "In short: “hello”, and also “one more”, noted."


async def test_the_same_inputs_give_the_same_steps() -> None:
    first = await run("hello", ["a"], {2: "x"})
    again = await run("hello", ["a"], {2: "x"})
    assert first.said == again.said
