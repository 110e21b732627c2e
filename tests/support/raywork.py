"""Functions for the Ray cluster tests. A task on a node finds a function by module and name,
so they live here, imported as the top-level module ``raywork``; the cluster's nodes get this
folder on their PYTHONPATH."""

from __future__ import annotations

import time


def node(shared: float, item: int) -> tuple[int, str]:
    """The item and the id of the Ray node it ran on, after ``shared`` seconds."""
    import ray

    time.sleep(shared)
    return item, ray.get_runtime_context().get_node_id()


def slow(shared: float, item: int) -> int:
    """The item, after ``shared`` seconds."""
    time.sleep(shared)
    return item


def fails_at_three(shared: None, item: int) -> int:
    """The item, except item 3, which raises."""
    if item == 3:
        raise ValueError("item 3 is refused")
    return item
