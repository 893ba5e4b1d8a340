"""The executor SDK: run an async function once per activation of an interaction.

    from processors.executor import Turn

    async def reply(turn: Turn) -> None:
        await turn.say(f"You said: {turn.text}")

    # orchestral-stream executor mymodule:reply

Returning completes the interaction (unless the function waited, completed or failed it);
raising fails it with the error as its reason; its task is cancelled within a second of the
interaction's `cancelled` or `failed` record. See the README, "Writing an executor".
"""

from processors.executor.executor import Executor, Handler
from processors.executor.loading import load_handler
from processors.executor.messages import Message, event_text, payload_text
from processors.executor.turn import Turn, TurnOver, step_event_id

__all__ = [
    "Executor",
    "Handler",
    "Message",
    "Turn",
    "TurnOver",
    "event_text",
    "load_handler",
    "payload_text",
    "step_event_id",
]
