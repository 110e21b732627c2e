from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from types import ModuleType

import pytest

from ffe.compute import LocalExecutor, in_order


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # A spawned worker starts with this process's sys.path, so it finds the module too.
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "support"))
    return importlib.import_module("executorwork")


def test_map_when_pool_then_every_index_once_and_in_order_restores_items(work: ModuleType) -> None:
    pairs = list(LocalExecutor(2).map(work.scaled, range(12), work.Counted(3)))

    assert sorted(index for index, _ in pairs) == list(range(12))
    assert [value for value, _, _ in in_order(pairs, 12)] == [3 * i for i in range(12)]


def test_map_when_pool_then_shared_data_arrives_once_per_worker(work: ModuleType) -> None:
    results = in_order(LocalExecutor(2).map(work.scaled, range(20), work.Counted(1)), 20)

    pids = {pid for _, pid, _ in results}
    assert 1 <= len(pids) <= 2
    assert os.getpid() not in pids
    assert {received for _, _, received in results} == {1}  # never once per item


def test_map_when_progress_given_then_called_once_per_finished_item(work: ModuleType) -> None:
    seen: list[tuple[int, int]] = []

    pairs = list(
        LocalExecutor(2).map(work.slow, range(7), 0.0, progress=lambda i, r: seen.append((i, r)))
    )

    assert sorted(seen) == [(i, i) for i in range(7)]
    assert seen == pairs


def test_map_when_cancel_set_after_first_then_unstarted_items_dropped(work: ModuleType) -> None:
    cancel = threading.Event()
    # 40 items of 0.3 s on two workers: 6 s to the end, well under that when the rest is dropped
    pairs = LocalExecutor(2).map(
        work.slow, range(40), 0.3, cancel=cancel, progress=lambda *_: cancel.set()
    )

    got = list(pairs)

    assert len(got) == 1  # nothing reported after the flag
    assert in_order(got, 40) == [got[0][1]]


def test_map_when_cancel_set_before_in_process_then_nothing_runs(work: ModuleType) -> None:
    cancel = threading.Event()
    cancel.set()

    assert list(LocalExecutor(1).map(work.slow, range(3), 0.0, cancel=cancel)) == []


def test_map_when_one_worker_then_runs_in_this_process_in_order(work: ModuleType) -> None:
    pairs = list(LocalExecutor(1).map(work.pid, range(3), None))

    assert pairs == [(0, os.getpid()), (1, os.getpid()), (2, os.getpid())]


def test_map_when_inside_a_pools_worker_then_nested_map_runs_in_that_worker(
    work: ModuleType,
) -> None:
    results = in_order(LocalExecutor(2).map(work.nested, range(2), 4), 2)

    for outer, inner in results:
        assert outer != os.getpid()
        assert inner == [outer] * 4  # no pool of its own inside the worker


def test_map_when_item_raises_then_error_reaches_the_caller() -> None:
    with pytest.raises(ZeroDivisionError):
        list(LocalExecutor(1).map(_divide, [1, 0, 2], 1))


def test_workers_when_none_then_one_per_core() -> None:
    assert LocalExecutor(None).workers == (os.cpu_count() or 1)
    assert LocalExecutor(3).workers == 3


def _divide(shared: int, item: int) -> float:
    return shared / item


def test_session_when_pool_then_items_submitted_one_at_a_time_run_in_workers(
    work: ModuleType,
) -> None:
    with LocalExecutor(2).open(work.scaled, work.Counted(5)) as session:
        first = session.submit(1).result(timeout=60)
        # The next item is chosen from the first result, as a tuner's next trial would be.
        second = session.submit(first[0] + 1).result(timeout=60)

    assert (first[0], second[0]) == (5, 30)
    assert os.getpid() not in {first[1], second[1]}
    assert {first[2], second[2]} == {1}  # shared data arrived once per worker


def test_session_when_one_worker_then_items_run_here_and_errors_travel_in_the_future(
    work: ModuleType,
) -> None:
    with LocalExecutor(1).open(work.pid, None) as session:
        assert session.submit(0).result() == os.getpid()
    with LocalExecutor(1).open(work.slow, "not a number") as session:
        failed = session.submit(1)
        assert isinstance(failed.exception(), TypeError)


def test_session_when_cancelled_then_items_not_started_are_dropped_and_submit_refused(
    work: ModuleType,
) -> None:
    session = LocalExecutor(2).open(work.slow, 1.0)
    futures = [session.submit(i) for i in range(16)]
    futures[0].result(timeout=60)  # the workers are up and busy
    started = sum(f.done() or f.running() for f in futures)  # handed to a worker by now
    session.cancel()
    kept = [f for f in futures if not f.cancelled()]
    # What had not been handed to a worker is dropped (one more per worker may have been
    # handed over between the count and the cancel); what had finishes.
    assert len(kept) <= started + 2 < len(futures)
    assert [f.result(timeout=60) for f in kept] == [futures.index(f) for f in kept]
    with pytest.raises(RuntimeError, match="open another"):
        session.submit(99)
    session.close()


def test_session_when_opened_inside_a_pool_worker_then_it_runs_in_that_worker(
    work: ModuleType,
) -> None:
    results = in_order(LocalExecutor(2).map(work.nested_session_pid, range(2), None), 2)

    for outer, inner in results:
        assert outer == inner
        assert outer != os.getpid()
