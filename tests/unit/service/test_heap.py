"""heap.settle: start-up's survivors frozen out of the collector's sight, and what was frozen
before and is garbage since collected, not kept for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ffe.service import heap


class _Node:
    """An object in a reference cycle: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process as it was


def test_settle_when_a_frozen_object_became_garbage_then_it_is_collected() -> None:
    node = _Node()
    gone = weakref.ref(node)
    gc.freeze()  # as an earlier settle did, while the node was in use
    del node
    gc.collect()
    assert gone() is not None  # frozen: a full collection does not see it

    heap.settle()

    assert gone() is None


def test_settle_when_objects_survive_then_they_are_frozen() -> None:
    before = gc.get_freeze_count()
    kept = [_Node() for _ in range(100)]

    heap.settle()

    assert gc.get_freeze_count() >= before + len(kept)
    assert all(node.me is node for node in kept)
