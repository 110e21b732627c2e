"""The Ray executor's parts that need no cluster: batching, the missing-Ray message, nesting
and a fast failure on an address nobody answers at. The cluster itself is tested in
tests/integration/compute/test_ray_cluster.py."""

from __future__ import annotations

import socket
import sys
import time
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest

from ffe.compute import executor, in_order
from ffe.compute.ray_executor import (
    INSTALL_HINT,
    Batches,
    ClusterError,
    RayExecutor,
    _ffe_version,
    check_versions,
    import_ray,
)


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


class _Ref:
    """An object reference of the fake cluster: the value is there at once."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def hex(self) -> str:
        return f"{id(self):x}"

    def future(self) -> Future[Any]:
        done: Future[Any] = Future()
        done.set_result(self.value)
        return done


class _FakeRay:
    """Ray as the executor calls it, on a cluster of ``cpus`` CPUs where a task runs as soon
    as it is submitted; it counts the tasks submitted and not yet collected (each of one CPU
    would be running at once on a cluster with CPUs to spare) and what was called, in order."""

    class exceptions:  # noqa: N801 - the shape of ray.exceptions
        class RayTaskError(Exception):
            pass

    def __init__(self, cpus: int) -> None:
        self.cpus, self.calls = cpus, list[str]()
        self.in_flight: list[_Ref] = []
        self.most_in_flight = 0

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(self.cpus)}

    def put(self, value: Any) -> _Ref:
        self.calls.append("put")
        return _Ref(value)

    def remote(self, **options: Any) -> Any:
        return lambda batch_fn: SimpleNamespace(remote=self.submit)  # the batch's task

    def submit(self, fn: Any, box: list[_Ref], items: list[Any]) -> _Ref:
        ref = _Ref(([fn(box[0].value, item) for item in items], 0.001))
        self.in_flight.append(ref)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        return ref

    def wait(self, refs: list[_Ref], num_returns: int, timeout: float) -> Any:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: _Ref) -> Any:
        self.in_flight.remove(ref)
        return ref.value

    def cancel(self, ref: _Ref) -> None:
        if ref in self.in_flight:
            self.in_flight.remove(ref)


def _on_fake(monkeypatch: pytest.MonkeyPatch, cpus: int) -> _FakeRay:
    from ffe.compute import ray_executor

    fake = _FakeRay(cpus)

    def connect(address: str) -> _FakeRay:
        fake.calls.append("connect")
        return fake

    monkeypatch.setattr(ray_executor, "import_ray", lambda: fake)
    monkeypatch.setattr(ray_executor, "_connect", connect)
    monkeypatch.setattr(ray_executor, "_TASKS", {})  # the fake's task, not one made before
    return fake


def test_map_when_workers_capped_below_the_cluster_then_no_more_tasks_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _on_fake(monkeypatch, cpus=8)

    pairs = in_order(RayExecutor("127.0.0.1:46999", workers=2).map(double, range(40), 3), 40)

    assert pairs == [3 * item for item in range(40)]
    assert fake.most_in_flight <= 2  # --jobs 2 on a cluster of 8 CPUs: 2 tasks, not 4


def test_map_when_not_capped_then_a_batch_waits_queued_behind_each_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _on_fake(monkeypatch, cpus=2)

    pairs = in_order(RayExecutor("127.0.0.1:46999").map(double, range(40), 3), 40)

    assert pairs == [3 * item for item in range(40)]
    assert fake.most_in_flight == 4  # the next batch is queued before a CPU frees up


def test_open_when_not_yet_connected_then_connects_before_sending_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _on_fake(monkeypatch, cpus=2)

    with RayExecutor("127.0.0.1:46999").open(double, 3) as session:
        result = session.submit(5)

    # ray.put before ray.init would start a Ray of its own on this machine (Ray connects
    # itself on first use), and the executor would then skip the cluster and its ffe check.
    assert fake.calls[:2] == ["connect", "put"]
    assert result.result(timeout=5) == 15


class _ProbedRay(_FakeRay):
    """Two alive nodes; the second cannot import ffe, so its probe fails as Ray reports it."""

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": "a" * 56, "Alive": True}, {"NodeID": "b" * 56, "Alive": True}]

    def remote(self, **options: Any) -> Any:
        def probe(fn: Any) -> Any:
            node = iter(self.nodes())
            return SimpleNamespace(
                options=lambda **chosen: SimpleNamespace(remote=lambda: _Ref(next(node)))
            )

        return probe

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        found = [self._version(ref) for ref in (refs if isinstance(refs, list) else [refs])]
        return found if isinstance(refs, list) else found[0]

    def _version(self, ref: _Ref) -> str:
        if ref.value["NodeID"].startswith("b"):
            raise self.exceptions.RayTaskError("The remote function failed to import")
        return _ffe_version()


def test_check_versions_when_a_node_has_no_ffe_then_cluster_error_naming_it() -> None:
    ray_installed()  # for its scheduling strategy
    with pytest.raises(ClusterError, match=r"needs ffe .* installed.*'bbbbbbbb': 'none'"):
        check_versions(_ProbedRay(cpus=2))
