"""gc_pauses.settle: what survives is exempt from later collections, and nothing leaks."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from processors.worker import gc_pauses


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_garbage_is_freed_before_the_survivors_are_frozen() -> None:
    garbage = cycle()
    gc_pauses.settle()
    assert garbage() is None
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert gc.get_freeze_count() > 0  # a full collection leaves the frozen objects alone


def test_a_frozen_object_that_becomes_garbage_is_freed_at_the_next_settle() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    gc_pauses.settle()
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is not None  # frozen: a collection does not see it
    gc_pauses.settle()
    assert ref() is None
