"""Executor functions the integration tests run (`orchestral-stream executor tests.support.agents:NAME`).

They note what they saw, one JSON line per note, to the file `ORCHESTRAL_TEST_NOTES` names.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from processors.executor import Turn


def note(**fields: Any) -> None:
    path = os.environ.get("ORCHESTRAL_TEST_NOTES")
    if path:
        with open(path, "a", encoding="utf-8") as notes:
            notes.write(json.dumps({"at": time.time(), **fields}) + "\n")


async def echo(turn: Turn) -> None:
    """Five words, then return (which completes)."""
    note(started=turn.interaction_id, text=turn.text, history=[m.text for m in turn.history])
    for word in f"you said {turn.text} ok done".split()[:5]:
        await turn.say(word)


async def slow(turn: Turn) -> None:
    """A word every 0.25 s for 10 s; notes how many it had sent when it was cancelled."""
    sent = 0
    note(started=turn.interaction_id, text=turn.text)
    try:
        for n in range(40):
            sent += 1
            await turn.say(f"w{n}")
            await asyncio.sleep(0.25)
    except asyncio.CancelledError:
        note(cancelled=turn.interaction_id, sent=sent)
        raise


async def steerable(turn: Turn) -> None:
    """Slow words; a steering message is folded in as `steer:<text>`."""
    for n in range(16):
        for message in turn.steers():
            await turn.say(f"steer:{message.text}")
        await turn.say(f"w{n}")
        await asyncio.sleep(0.25)


async def asks(turn: Turn) -> None:
    """Asks for a name and waits for the user; resumed, greets."""
    if turn.text == "start":
        await turn.say("what is your name?")
        await turn.wait_user()
    else:
        await turn.say(f"hello {turn.text}")


async def raises(turn: Turn) -> None:
    await turn.say("about to fail")
    raise ValueError("boom")


async def quiet(turn: Turn) -> None:
    """Works 5 s without a word: only its heartbeats say it is alive."""
    await asyncio.sleep(5)
    await turn.say("done")
