"""The chat demo's agent (`make demo`): a reply streamed word by word, slowly enough that a new
message can interrupt it, queue behind it or steer it (README, "Try the chat demo").

    orchestral-stream executor processors.executor.demo:reply

No model and no randomness: the same event and history give the same words, so a turn re-run
after an executor crash repeats the steps the first attempt stored (the worker answers them
`duplicate`).
"""

from __future__ import annotations

import asyncio

from processors.executor import Message, Turn

WORD_SECONDS = 0.25  # a few seconds per reply: time to type a second message
QUOTE_WORDS = 8


async def reply(turn: Turn) -> None:
    """Say the reply word by word; fold in each message steered (merged) into it meanwhile."""
    asked = [turn.text]  # what this reply answers: the message, then each steer
    for word in opening(turn.text, said_before(turn.history)):
        for steer in turn.steers():
            asked.append(steer.text)
            await turn.say(f"(ok, also: {quote(steer.text)}) ")
        await turn.say(word + " ")
        await asyncio.sleep(WORD_SECONDS)
    asked += [steer.text for steer in turn.steers()]
    await turn.say(summary(asked))
    # Returning completes the interaction.


def said_before(history: list[Message]) -> list[str]:
    """The user's earlier messages on this thread, oldest first."""
    return [message.text for message in history if message.type == "user_input"]


def opening(text: str, earlier: list[str]) -> list[str]:
    """The words of the reply before its summary."""
    # The history is the thread's recent events only (ORCHESTRAL_EXECUTOR_HISTORY), and every
    # streamed word is one: "I see", not "you sent".
    if earlier:
        plural = "s" if len(earlier) > 1 else ""
        context = (
            f"I see {len(earlier)} earlier message{plural} from you, the last {quote(earlier[-1])}."
        )
    else:
        context = "I see no earlier message from you."
    pace = "I answer slowly: interrupt, queue or steer me."
    return f"You said {quote(text)}. {context} {pace}".split()


def summary(asked: list[str]) -> str:
    """The last words: everything the reply was asked, the steers included."""
    if len(asked) == 1:
        return f"In short: {quote(asked[0])}, noted."
    return f"In short: {quote(asked[0])}, and also {', '.join(map(quote, asked[1:]))}, noted."


def quote(text: str) -> str:
    words = text.split()
    clipped = words[:QUOTE_WORDS] + (["…"] if len(words) > QUOTE_WORDS else [])
    return f"“{' '.join(clipped)}”"
