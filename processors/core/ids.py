"""Derived identities: the same input yields the same ids on any worker, after any crash."""

from __future__ import annotations

import uuid
from typing import Final

# Fixed namespace of orchestral-stream's UUID v5 interaction ids. Never change it: ids in the
# store would stop matching what a replay of the same input derives.
INTERACTION_NAMESPACE: Final = uuid.UUID("6f1c2a57-3d0e-5b8a-9c41-0e7d5a2b9f13")


def interaction_id(thread_id: str, source_event_id: str) -> str:
    """UUID v5 of (thread id, event id); the length prefix keeps the pair unambiguous."""
    return str(uuid.uuid5(INTERACTION_NAMESPACE, f"{len(thread_id)}:{thread_id}{source_event_id}"))


def derived_event_id(topic: str, partition: int, offset: int) -> str:
    """The contract's event id of a record that carries none: its position in the input topic."""
    return f"{topic}:{partition}:{offset}"
