"""The Ray executor's parts that need no cluster: batching, the missing-Ray message, nesting
and a fast failure on an address nobody answers at. The cluster itself is tested in
tests/integration/compute/test_ray_cluster.py."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from ffe.compute import executor
from ffe.compute.ray_executor import INSTALL_HINT, Batches, RayExecutor, import_ray


def spans(batches: Batches) -> list[range]:
    taken = []
    while batches.left:
        taken.append(batches.take())
    return taken


def test_take_when_nothing_measured_then_one_item_per_batch() -> None:
    batches = Batches(100, workers=2)

    assert [len(batches.take()) for _ in range(4)] == [1, 1, 1, 1]


def test_take_when_items_measured_then_batches_aim_at_the_target_seconds() -> None:
    batches = Batches(10_000, workers=2, target_s=0.3)
    batches.observe(1, 0.003)  # 3 ms an item: 100 items make 0.3 s

    assert len(batches.take()) == 100


def test_take_when_few_items_left_then_a_batch_leaves_work_for_every_worker() -> None:
    batches = Batches(40, workers=2, target_s=10.0, ahead=2)
    batches.observe(1, 0.001)  # 10,000 items would fit in a batch's target

    assert len(batches.take()) == 10  # 40 left, shared by 2 workers with 2 batches each
    assert len(batches.take()) == 8  # a quarter of the 30 left, rounded up


def test_take_when_all_taken_then_every_index_once_in_order() -> None:
    batches = Batches(1_003, workers=3)
    batches.observe(7, 0.0007)

    taken = spans(batches)

    assert [i for span in taken for i in span] == list(range(1_003))
    assert max(len(span) for span in taken) > 1  # batched, not one task per item


def test_observe_when_slower_items_then_estimate_follows_them() -> None:
    batches = Batches(10_000, workers=1, target_s=1.0)
    batches.observe(10, 0.01)  # 1 ms an item
    batches.observe(10, 0.03)  # 3 ms

    assert batches.item_s == pytest.approx(0.002)
    assert len(batches.take()) == 500


def test_import_ray_when_not_installed_then_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError

    with pytest.raises(ImportError, match=r"pip install 'ffe\[ray\]'") as raised:
        RayExecutor("127.0.0.1:46999")

    assert str(raised.value) == INSTALL_HINT


def ray_installed() -> None:
    try:
        import_ray()
    except ImportError:
        pytest.skip("Ray is not installed")  # the cluster tests fail for it under CI instead


def double(shared: int, item: int) -> int:
    return shared * item


def test_map_when_inside_a_worker_then_runs_here_without_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ray_installed()
    monkeypatch.setitem(executor._WORKER, "marked", True)  # as a task on a node is
    seen: list[int] = []

    pairs = list(
        RayExecutor("127.0.0.1:46999").map(
            double, [1, 2, 3], 2, progress=lambda i, r: seen.append(i)
        )
    )

    assert pairs == [(0, 2), (1, 4), (2, 6)]
    assert seen == [0, 1, 2]


def test_connect_when_nobody_answers_then_connection_error_at_once() -> None:
    ray_installed()
    with socket.socket() as free:  # a port of this machine with nothing listening
        free.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{free.getsockname()[1]}"
    started = time.monotonic()

    with pytest.raises(ConnectionError, match="ray start --head"):
        RayExecutor(address).connect()

    assert time.monotonic() - started < 10
