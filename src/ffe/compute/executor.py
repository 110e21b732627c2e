"""The executor port: run one function over many items, in parallel where that pays.

Sweep points, walk-forward segments and rolling-forecast blocks are independent, so each
runs through ``Executor.map``. Work that decides its next item from the results so far (a
tuner asking for the next trial) opens a ``Session`` instead and ``submit``s items one at a
time, getting a future for each. ``LocalExecutor`` is a pool of spawned processes on this
machine; another implementation (a cluster) can take its place behind the same port.

Nested use is the port's business: inside a worker of a ``LocalExecutor`` pool every
executor runs in that process, so a pool in each worker never multiplies the processes past
the cap the outer pool was given.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from ffe.compute.carry import Carried, carried, install

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

Results = Generator[tuple[int, R], None, None]

_POLL_S = 0.2  # how often a map waiting on its worker processes looks at its cancel flag


class Executor(Protocol):
    """Runs ``fn(shared, item)`` for every item, in parallel where it can."""

    @property
    def workers(self) -> int:
        """The most items run at once."""
        ...

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Iterable[T],
        shared: S,
        *,
        progress: Callable[[int, R], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Results[R]:
        """``(index, result)`` pairs as the items finish (``in_order`` sorts them back).

        ``fn`` must be picklable (a module-level function); ``shared`` is sent once to each
        worker, not once per item. ``progress(index, result)`` is called for each finished
        item before it is yielded. Once ``cancel`` is set (by the caller, or by ``progress``),
        items not yet started are dropped and nothing further is yielded: the generator ends
        early, and the caller compares what it got with what it asked for. An exception in
        ``fn`` is raised here, and the items not yet started are dropped. Close the generator
        (``contextlib.closing``) when stopping before its end, so the workers stop now.
        """
        ...

    def open(self, fn: Callable[[S, T], R], shared: S) -> Session[S, R]:
        """A session of workers for ``fn`` and ``shared``, for items submitted one at a time
        (``with executor.open(fn, shared) as session: session.submit(item)``). Leaving the
        ``with`` waits for the items running; ``cancel`` first to drop the rest."""
        ...


class Session(Protocol[S, R]):
    """Workers holding ``fn`` and ``shared`` (sent once to each), taking items one at a time."""

    def submit(self, item: Any) -> Future[R]:
        """Run ``fn(shared, item)``; its future (done already when it ran in this process).
        Refused (``RuntimeError``) once the session is cancelled or closed."""
        ...

    def cancel(self) -> None:
        """Drop every item not yet started (their futures are cancelled); items running
        finish. Submitting afterwards is refused."""
        ...

    def close(self) -> None:
        """Wait for the items running, then free the workers."""
        ...

    def __enter__(self) -> Session[S, R]: ...

    def __exit__(self, *exc: object) -> None: ...


def in_order(pairs: Iterable[tuple[int, R]], total: int) -> list[R]:
    """The results of ``pairs`` by index; indices never yielded (a cancelled map) are left
    out, so a list shorter than ``total`` says the map stopped early."""
    found: list[tuple[bool, Any]] = [(False, None)] * total
    for index, result in pairs:
        found[index] = (True, result)
    return [result for done, result in found if done]


# Filled by the pool's initializer: the worker's fn and shared data, sent once; not empty
# says this process is a pool's worker.
_WORKER: dict[str, Any] = {}


def _init_worker(state: Carried, work: bytes) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when its
    # workers stop, rather than each dying mid-item with a traceback (a broken pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install(state)  # before the work is unpickled: it may name what the state brings
    fn, shared = pickle.loads(work)  # from our own parent
    _WORKER.update(fn=fn, shared=shared)


def in_worker() -> bool:
    """Whether this process is an executor's worker (a pool's, or a cluster task's)."""
    return bool(_WORKER)


def mark_worker() -> None:
    """Mark this process as an executor's worker, so executors used here run in it."""
    _WORKER.setdefault("marked", True)


def _run_item(item: Any) -> Any:
    return _WORKER["fn"](_WORKER["shared"], item)


class LocalExecutor:
    """A pool of up to ``workers`` spawned processes; ``workers <= 1`` (or a call from inside
    a pool's worker) runs every item in the calling process, with no pool."""

    def __init__(self, workers: int | None = None) -> None:
        """``workers``: None or 0 for one per core."""
        self._workers = workers if workers and workers > 0 else (os.cpu_count() or 1)

    @property
    def workers(self) -> int:
        """The most items run at once."""
        return self._workers

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Iterable[T],
        shared: S,
        *,
        progress: Callable[[int, R], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Results[R]:
        """See ``Executor.map``."""
        todo = list(items)
        stop = cancel or threading.Event()
        workers = min(self._workers, len(todo))
        if workers <= 1 or in_worker():
            pairs = in_process(fn, todo, shared, stop)
        else:
            pairs = _in_pool(fn, todo, shared, stop, workers)
        with contextlib.closing(pairs):
            for index, result in pairs:
                if progress is not None:
                    progress(index, result)
                yield index, result

    def open(self, fn: Callable[[S, T], R], shared: S) -> Session[S, R]:
        """See ``Executor.open``: a pool of ``workers`` spawned processes, or this process
        (one worker, or a call from inside a pool's worker)."""
        if self._workers <= 1 or in_worker():
            return _InProcessSession(fn, shared)
        return _PoolSession(fn, shared, self._workers)


class _InProcessSession:
    """Items run in the calling process as they are submitted."""

    def __init__(self, fn: Callable[[Any, Any], Any], shared: Any) -> None:
        self._fn, self._shared, self._open = fn, shared, True

    def submit(self, item: Any) -> Future[Any]:
        if not self._open:
            raise RuntimeError("the session is cancelled or closed: open another")
        future: Future[Any] = Future()
        try:
            future.set_result(self._fn(self._shared, item))
        except Exception as exc:  # the future carries it, as a pool's would
            future.set_exception(exc)
        return future

    def cancel(self) -> None:
        self._open = False

    def close(self) -> None:
        self._open = False

    def __enter__(self) -> _InProcessSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PoolSession:
    """A spawned pool whose workers got ``fn`` and ``shared`` once, at start."""

    def __init__(self, fn: Callable[[Any, Any], Any], shared: Any, workers: int) -> None:
        self._pool = _pool(fn, shared, workers)
        self._open = True
        self._futures: set[Future[Any]] = set()

    def submit(self, item: Any) -> Future[Any]:
        if not self._open:
            raise RuntimeError("the session is cancelled or closed: open another")
        future = self._pool.submit(_run_item, item)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def cancel(self) -> None:
        self._open = False
        # Cancelled here, at once: the pool's own cancel_futures happens later, on its
        # manager thread. A future already handed to a worker cannot be cancelled.
        for future in list(self._futures):
            future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._open = False
        self._pool.shutdown(wait=True)

    def __enter__(self) -> _PoolSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pool(fn: Callable[[Any, Any], Any], shared: Any, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        # spawn, not fork: a child forked from a process whose OpenMP threads (LightGBM)
        # have started can hang for ever.
        mp_context=multiprocessing.get_context("spawn"),
        max_workers=workers,
        initializer=_init_worker,
        initargs=(carried(), pickle.dumps((fn, shared))),
    )


def in_process(
    fn: Callable[[S, T], R], items: Sequence[T], shared: S, stop: threading.Event
) -> Results[R]:
    """``fn`` over ``items`` in this process, in order, until ``stop`` is set."""
    for index, item in enumerate(items):
        if stop.is_set():
            return
        yield index, fn(shared, item)


def _in_pool(
    fn: Callable[[S, T], R], items: Sequence[T], shared: S, stop: threading.Event, workers: int
) -> Results[R]:
    pool = _pool(fn, shared, workers)
    try:
        pending: dict[Future[Any], int] = {
            pool.submit(_run_item, item): index for index, item in enumerate(items)
        }
        while pending and not stop.is_set():
            finished, _ = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            for future in finished:
                if stop.is_set():
                    return
                yield pending.pop(future), future.result()
    finally:
        # Also on a stop or an error: the items not yet started are dropped, and the workers
        # end once the item each holds is done, instead of running the rest.
        pool.shutdown(wait=True, cancel_futures=True)
