"""The executor port on a Ray cluster: items run as Ray tasks of one CPU each.

``shared`` goes to the object store once per map or session (``ray.put``) and each worker
process fetches it once, then keeps it for the tasks that follow. Items travel in batches, one
task per batch, sized from the time items took so far so that a batch takes about
``_BATCH_S``: with tiny items (a vectorized sweep point) the per-task overhead of a few
milliseconds would otherwise cost more than the work. Results still come back per index, and
a batch runs ``fn`` on each of its items exactly as ``LocalExecutor`` does, so the results are
the same, bit for bit. A task lost with its node (or its worker process) is run again, up to
``retries`` times.

Every node runs the ffe installed there (no ffe code is shipped with the tasks; strategy files
the caller read travel by value, see ``ffe.compute.carry``), so connecting
checks that each node's ffe has this process's version. One process talks to one cluster:
once connected (here, or by the caller's own ``ray.init``) every ``RayExecutor`` uses that
connection. Ray is imported only when an executor is made, so ffe runs without it.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ffe.compute.carry import carried, install
from ffe.compute.executor import (
    Results,
    Session,
    _InProcessSession,
    in_process,
    in_worker,
    mark_worker,
)

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "the Ray executor needs Ray: pip install 'ffe[ray]'"
_BATCH_S = 0.3  # seconds of work a batch aims at: overhead well under 1%, cancel still quick
_POLL_S = 0.2  # how often a map waiting on the cluster looks at its cancel flag
_AHEAD = 2  # batches in flight per worker, so a node never idles waiting for the next one
_CONNECT_S = 5.0  # an address nobody answers at fails fast instead of retrying for minutes
_PROBE_S = 120.0  # how long the version check waits for every node to answer


class ClusterError(RuntimeError):
    """The cluster cannot run ffe's work as configured (wrong ffe version on a node)."""


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


class RayExecutor:
    """The executor port on the Ray cluster at ``address`` (``host:port`` of its head, or
    ``ray://host:10001``); ``workers`` caps the tasks run at once (None: the cluster's CPUs)."""

    def __init__(self, address: str, workers: int | None = None, *, retries: int = 3) -> None:
        import_ray()  # fail now, with the install hint, not at the first map
        self._address, self._cap, self._retries = address, workers, retries
        self._cpus: int | None = None

    def connect(self) -> RayExecutor:
        """Connect (once per process) and check every node's ffe; returns self.

        Raises ConnectionError when nobody answers at the address, ClusterError when a node
        runs another version of ffe."""
        if self._cpus is None:
            ray = _connect(self._address)
            self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    @property
    def workers(self) -> int:
        """The most items run at once: the cluster's CPUs, or fewer when capped."""
        cpus = self.connect()._cpus or 1
        return min(cpus, self._cap) if self._cap else cpus

    def map(
        self,
        fn: Callable[[S, T], R],
        items: Iterable[T],
        shared: S,
        *,
        progress: Callable[[int, R], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Results[R]:
        """See ``Executor.map``; inside a worker (a pool's, or a Ray task) it runs here."""
        todo = list(items)
        stop = cancel or threading.Event()
        if in_worker() or not todo:
            pairs = in_process(fn, todo, shared, stop)
        else:
            pairs = self._on_cluster(fn, todo, shared, stop)
        with closing(pairs):
            for index, result in pairs:
                if progress is not None:
                    progress(index, result)
                yield index, result

    def open(self, fn: Callable[[S, T], R], shared: S) -> Session[S, R]:
        """See ``Executor.open``: one task per item, at most ``workers`` running at once."""
        if in_worker():
            return _InProcessSession(fn, shared)
        workers = self.workers  # connects first: Ray's put alone would start a Ray of its own
        ray = import_ray()
        box = _boxed(ray, shared)
        return _RaySession(_task(ray, self._retries), fn, box, workers)

    def _on_cluster(
        self, fn: Callable[[S, T], R], todo: Sequence[T], shared: S, stop: threading.Event
    ) -> Results[R]:
        workers = self.workers  # connects
        # Batches sent ahead wait for a CPU only when every CPU of the cluster is this map's;
        # under a cap (``--jobs``) they would start at once and run past it.
        in_flight = workers if workers < (self._cpus or 1) else _AHEAD * workers
        ray = import_ray()
        task, box = _task(ray, self._retries), _boxed(ray, shared)
        batches = Batches(len(todo), workers)
        running: dict[Any, range] = {}
        try:
            while not stop.is_set():
                while len(running) < in_flight and batches.left:
                    span = batches.take()
                    running[task.remote(fn, box, todo[span.start : span.stop])] = span
                if not running:
                    return
                ready, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
                for ref in ready:
                    span = running.pop(ref)
                    results, seconds = _result(ray, ref)
                    batches.observe(len(span), seconds)
                    yield from _until_stopped(zip(span, results, strict=True), stop)
        finally:
            # Also on a stop or an error: batches not yet started never start, and running
            # ones are interrupted rather than left to finish work nobody will read.
            for ref in running:
                ray.cancel(ref)


def _until_stopped(pairs: Iterable[tuple[int, R]], stop: threading.Event) -> Results[R]:
    for pair in pairs:
        if stop.is_set():
            return
        yield pair


@dataclass(slots=True)
class Batches:
    """Cuts ``total`` items into consecutive spans of about ``target_s`` seconds each, from
    the seconds per item measured so far (one item per span until something is measured);
    never more than a ``1 / (ahead * workers)`` share of what is left, so every worker has
    work until the end."""

    total: int
    workers: int
    target_s: float = _BATCH_S
    ahead: int = _AHEAD
    item_s: float | None = None
    _next: int = field(default=0, init=False)

    @property
    def left(self) -> int:
        """Items not yet handed out."""
        return self.total - self._next

    def take(self) -> range:
        """The next span of item indices (empty once every item is handed out)."""
        size = 1 if self.item_s is None else round(self.target_s / max(self.item_s, 1e-9))
        share = math.ceil(self.left / (self.ahead * max(1, self.workers)))
        size = max(1, min(size, share, self.left))
        span = range(self._next, min(self.total, self._next + size))
        self._next = span.stop
        return span

    def observe(self, count: int, seconds: float) -> None:
        """``count`` items took ``seconds`` in one task: the estimate follows the latest
        batches (half weight each), since the first items pay a worker's imports."""
        if count <= 0:
            return
        measured = max(seconds, 0.0) / count
        self.item_s = measured if self.item_s is None else (self.item_s + measured) / 2


class _RaySession:
    """Items submitted one at a time, one task each, at most ``limit`` running; the rest
    wait here, so a cancel drops them before they reach the cluster."""

    def __init__(self, task: Any, fn: Callable[[Any, Any], Any], box: list[Any], limit: int):
        self._task, self._fn, self._box, self._limit = task, fn, box, max(1, limit)
        self._changed = threading.Condition()
        self._waiting: deque[tuple[Any, Future[Any]]] = deque()
        self._running = 0
        self._open = True

    def submit(self, item: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._changed:
            if not self._open:
                raise RuntimeError("the session is cancelled or closed: open another")
            self._waiting.append((item, future))
            self._start_waiting()
        return future

    def _start_waiting(self) -> None:
        # Called holding the lock.
        while self._running < self._limit and self._waiting:
            item, future = self._waiting.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # the caller cancelled it while it waited
            ref = self._task.remote(self._fn, self._box, [item])
            self._running += 1
            ref.future().add_done_callback(lambda done, mine=future: self._finished(mine, done))

    def _finished(self, future: Future[Any], done: Future[Any]) -> None:
        try:
            results, _ = done.result()
            future.set_result(results[0])
        except Exception as exc:  # the future carries it, as a pool's would
            future.set_exception(_cause(exc))
        with self._changed:
            self._running -= 1
            self._start_waiting()
            self._changed.notify_all()

    def cancel(self) -> None:
        with self._changed:
            self._open = False
            while self._waiting:
                self._waiting.popleft()[1].cancel()
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._open = False
            self._changed.wait_for(lambda: not self._running and not self._waiting)

    def __enter__(self) -> _RaySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- on the driver -------------------------------------------------------------------------

_TASKS: dict[int, Any] = {}  # the remote batch function, by retry count, made once


def _task(ray: Any, retries: int) -> Any:
    if retries not in _TASKS:
        _TASKS[retries] = ray.remote(num_cpus=1, max_retries=retries)(_run_batch)
    return _TASKS[retries]


def _result(ray: Any, ref: Any) -> Any:
    """The task's value; an exception of ``fn`` is raised as itself, not wrapped."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise _cause(exc) from exc


def _cause(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


def _connect(address: str) -> Any:
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if not address.startswith("ray://"):
        _reachable(address)
    # Workers' prints must not reach this process's stdout: `--json` output is read there.
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    check_versions(ray)
    return ray


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=_CONNECT_S):
            pass
    except (OSError, ValueError) as exc:
        raise ConnectionError(
            f"no Ray cluster answers at {address!r} ({exc}): start one with "
            "`ray start --head --port=PORT` and set compute.ray_address to its host:PORT"
        ) from None


def check_versions(ray: Any) -> None:
    """Raise ClusterError unless every alive node imports this process's version of ffe."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=1)(_ffe_version)
    nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
        for node in nodes
    ]
    deadline = time.monotonic() + _PROBE_S
    found = {node: _probed(ray, ref, deadline) for node, ref in zip(nodes, refs, strict=True)}
    mine = _ffe_version()
    wrong = {node[:8]: version for node, version in found.items() if version != mine}
    if wrong:
        raise ClusterError(
            f"every Ray node needs ffe {mine} installed, as this process has; "
            f"found {wrong} (node id: ffe version)"
        )


def _probed(ray: Any, ref: Any, deadline: float) -> str:
    """The ffe version a node's probe found, or "none" when the node cannot import ffe (its
    task fails to load the probe: ffe is not installed there)."""
    try:
        return str(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
    except ray.exceptions.RayTaskError:
        return "none"


def _boxed(ray: Any, shared: Any) -> list[Any]:
    # What every task needs: the shared data, and what this process carries by value (the
    # strategy files it read: a node has only the installed ffe, not the caller's files).
    return [ray.put(shared), ray.put(carried())]


# --- on a node ---------------------------------------------------------------------------------

_SHARED: dict[str, Any] = {}  # the latest shared data this worker process fetched, by object id
_INSTALLED: set[str] = set()  # the carried states this worker process installed, by object id


def _ffe_version() -> str:
    import ffe

    return ffe.__version__


def _run_batch(
    fn: Callable[[Any, Any], Any], box: list[Any], items: Sequence[Any]
) -> tuple[list[Any], float]:
    """``fn(shared, item)`` for each item, and the seconds they took together. ``shared``
    comes boxed (a bare object reference would be fetched again for every task)."""
    mark_worker()  # an executor used by fn runs here, not on a pool of its own
    _install(box[1])
    shared = _fetch(box[0])
    start = time.perf_counter()
    results = [fn(shared, item) for item in items]
    return results, time.perf_counter() - start


def _install(ref: Any) -> None:
    key = ref.hex()
    if key not in _INSTALLED:  # once per map in each worker process
        install(import_ray().get(ref))
        _INSTALLED.add(key)


def _fetch(ref: Any) -> Any:
    key = ref.hex()
    if key not in _SHARED:
        _SHARED.clear()  # one map's data at a time: a worker serves one map after another
        _SHARED[key] = import_ray().get(ref)
    return _SHARED[key]
