"""Derived identities: the same input yields the same ids on any worker, after any crash."""

from __future__ import annotations

import hashlib
import uuid
from typing import Final

# Fixed namespace of orchestral-stream's UUID v5 interaction ids. Never change it: ids in the
# store would stop matching what a replay of the same input derives.
INTERACTION_NAMESPACE: Final = uuid.UUID("6f1c2a57-3d0e-5b8a-9c41-0e7d5a2b9f13")


_NAMESPACE_BYTES: Final = INTERACTION_NAMESPACE.bytes


def interaction_id(thread_id: str, source_event_id: str) -> str:
    """UUID v5 of (thread id, event id); the length prefix keeps the pair unambiguous.

    Equal to `uuid.uuid5(INTERACTION_NAMESPACE, name)`, computed directly: it runs for every
    new turn, and the uuid module's object round trip costs more than the hash.
    """
    name = f"{len(thread_id)}:{thread_id}{source_event_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_event_id(topic: str, partition: int, offset: int) -> str:
    """The contract's event id of a record that carries none: its position in the input topic."""
    return f"{topic}:{partition}:{offset}"


def rollback_mark_id(interaction_id: str, cause_event_id: str) -> str:
    """The event id of the `turn_rolled_back` mark of `interaction_id`, written for `cause`.

    Both parts: one input can roll back several interactions, and an interaction id can start
    twice (an event id re-sent past the dedupe window, README), so neither alone is unique.
    The interaction id is a fixed-length UUID, so the cause after it may hold colons.
    """
    return f"rollback:{interaction_id}:{cause_event_id}"


def lifecycle_mark_id(event_type: str, cause_event_id: str) -> str:
    """The event id of a thread-level mark (`thread_expired`, `thread_deleted`) of `cause`.

    One input writes at most one such mark, so its event id alone makes the mark's unique.
    """
    return f"{event_type}:{cause_event_id}"
