"""The response models accept what the project's own code produces (so drift fails here)."""

from __future__ import annotations

from processors.api.models import InteractionView, ThreadStateView
from processors.client.thread_view import describe_state
from processors.core import Interaction, QueuedEvent, ThreadState
from tests.support.api_fakes import TS, make_settings


def test_describe_state_fits_the_thread_state_model():
    state = ThreadState("t1", seq=3, partition=2, offset=9, updated_at=TS)
    state.interactions["i1"] = Interaction("i1", "waiting_event", TS, "e1", wait_kind="tool")
    state.interactions["i2"] = Interaction("i2", "completed", TS, "e2", ended_at=TS, task_ids=["k"])
    state.queue.append(QueuedEvent("e3", {"type": "user_input"}))
    described = describe_state(state, make_settings())
    view = ThreadStateView.model_validate(described)
    assert view.model_dump(mode="json") == described
    for item in described["interactions"]:
        assert InteractionView.model_validate(item).model_dump(mode="json") == item


def test_a_fresh_state_fits_too():
    described = describe_state(ThreadState("t2"), make_settings())
    assert ThreadStateView.model_validate(described).model_dump(mode="json") == described
