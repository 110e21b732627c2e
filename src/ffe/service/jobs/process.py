"""A job's work in a child process that leads a process group of its own.

Why a process: a backtest is one long call that never looks at a stop flag, and sweeps and
benchmarks start pools of worker processes. Ending the group (``RunningJob.end``: a cancel,
the job's time limit, its worker's shutdown) ends the job's process, its pools' workers and
whatever they started, whether or not the work cooperates: SIGTERM to the group, SIGKILL to
the group ``GRACE_S`` later if its process still runs (work may ignore SIGTERM), and to
whatever of the group outlived it. A child whose worker (the process that started it: an
``ffe worker``, or the API running jobs itself) goes away, even SIGKILLed, sees its stdin close
and ends its own group the same way (or sooner: when its answer pipe breaks under a progress
report).

The child is a fresh interpreter (``python -m ffe.service.jobs.process FD NICE``), not a fork
of the worker: it inherits none of the worker's threads, locks or open connections. It first
lowers its CPU priority by ``NICE`` (``jobs.nice``; the pools it starts inherit it), and its
scheduling autogroup's where Linux has them, so the API's requests on the same machine keep
their latency while jobs run. The worker sends it, on
stdin, its ``sys.path``, what it carries by value (``ffe.compute.carry``: the strategy files
it read) and then a pickled ``(target, args)``; the child calls
``target(*args, report)`` and answers on the pipe ``FD`` with pickled frames: progress
fractions, then the result or the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ffe.compute.carry import carried, install

log = logging.getLogger(__name__)

GRACE_S = 2.0  # after SIGTERM, how long a job's processes have before SIGKILL
_FRAME = struct.Struct("!I")  # the length of the pickle that follows


class JobProcessError(Exception):
    """The work in the job's process did not give an answer."""


class JobWorkError(JobProcessError):
    """The work raised; the message is the error's type and text."""


class JobCrashedError(JobProcessError):
    """The job's process ended without an answer (killed, or out of memory)."""


class JobProcess:
    """One job's work, running in a child process that leads a process group of its own."""

    def __init__(self, target: Callable[..., Any], args: tuple[Any, ...], nice: int = 0) -> None:
        read, write = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [sys.executable, "-m", "ffe.service.jobs.process", str(write), str(nice)],
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                start_new_session=True,  # a new process group: the one signalled to end it
            )
        finally:
            os.close(write)
        self.pid = self._popen.pid
        self._lock = threading.Lock()
        self._reaped = False  # its process has been waited for: its group id may be reused
        self._kills: list[threading.Timer] = []  # SIGKILLs due after a terminate's grace
        self._answers = os.fdopen(read, "rb")
        assert self._popen.stdin is not None  # stdin=PIPE
        self._stdin: IO[bytes] = self._popen.stdin
        with contextlib.suppress(BrokenPipeError):  # it died at once: answer() says so
            pickle.dump(sys.path, self._stdin)
            pickle.dump(carried(), self._stdin)
            pickle.dump((target, args), self._stdin)
            self._stdin.flush()

    def answer(self, report: Callable[[float], None]) -> Any:
        """Wait for the work's result, passing its progress to ``report``."""
        for kind, value in _frames(self._answers):
            if kind == "progress":
                report(value)
            elif kind == "done":
                return value
            else:
                raise JobWorkError(value)
        raise JobCrashedError(_crash_message(self._popen.wait()))

    @property
    def returncode(self) -> int | None:
        """How the process ended (negative: the signal that ended it); None while it runs."""
        return self._popen.poll()

    def terminate(self, grace_s: float = GRACE_S) -> None:
        """Ask every process of the group to end now, and kill the group ``grace_s`` later
        if its process still runs (work that ignores or handles SIGTERM would otherwise
        keep its answer pipe open, and ``answer`` and ``close`` waiting, for ever)."""
        self._signal(signal.SIGTERM)
        kill = threading.Timer(grace_s, self._kill_if_running)
        kill.daemon = True
        with self._lock:
            if self._reaped:
                return
            self._kills.append(kill)
        kill.start()

    def _kill_if_running(self) -> None:
        with self._lock:  # not once reaped: its group id may be another's by then
            if not self._reaped and self._popen.poll() is None:
                self._signal(signal.SIGKILL)

    def close(self, grace_s: float = GRACE_S) -> None:
        """Wait for the process to end (killing it after ``grace_s``), end whatever is left in
        its group the same way, and free the pipes."""
        try:
            self._popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._popen.wait()
        with self._lock:
            self._reaped = True
            kills, self._kills = self._kills, []
        for kill in kills:
            kill.cancel()
        if self._signal(0):  # a pool's workers outlived it
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self._signal(0) and time.monotonic() < deadline:
                time.sleep(0.05)
            self._signal(signal.SIGKILL)
        for pipe in (self._stdin, self._answers):
            with contextlib.suppress(OSError):
                pipe.close()

    def _signal(self, signum: int) -> bool:
        """Send ``signum`` to the group; whether any process of it was there to get it."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class RunningJob:
    """A job running in this process: its job process once started, and why it was ended."""

    def __init__(self) -> None:
        self.reason: tuple[str, str] | None = None  # (status, error) it was ended with
        self._process: JobProcess | None = None
        self._closed = False  # its process has ended and been reaped: its group id is free
        self._lock = threading.Lock()

    def end(self, status: str, error: str) -> None:
        """End the job's processes now; the job is to be recorded with ``status`` and
        ``error`` (the first reason given wins). Nothing once its process has been closed: its
        process group id may belong to another process by then."""
        with self._lock:
            if self._closed:
                return
            if self.reason is None:
                self.reason = (status, error)
            if self._process is not None:
                self._process.terminate()

    def run(
        self,
        target: Callable[..., Any],
        args: tuple[Any, ...],
        report: Callable[[float], None],
        nice: int = 0,
    ) -> Any:
        """Run ``target(*args, report)`` in a job process, ``nice`` lower in CPU priority, and
        wait for its result (blocks)."""
        process = JobProcess(target, args, nice)
        with self._lock:
            self._process = process
            if self.reason is not None:  # ended before its process had started
                process.terminate()
        try:
            return process.answer(report)
        finally:
            process.close()
            with self._lock:
                self._process, self._closed = None, True


def _crash_message(code: int) -> str:
    """Why a job's process that ended without an answer most likely did, and what to change."""
    ended = f"exit status {code}"
    if code < 0:
        with contextlib.suppress(ValueError):
            ended = f"killed by {signal.Signals(-code).name}"
    return (
        f"the job's process ended without a result ({ended}): most likely it was killed, "
        "often by the system when memory ran out; to use less, lower compute.max_workers "
        "(environment: FFE__COMPUTE__MAX_WORKERS) or submit a smaller grid or date range; if "
        "something outside the worker ends long runs, set jobs.time_limit_s.<kind> below its "
        "limit so the job stops with an error that says so"
    )


def _frames(stream: IO[bytes]) -> Iterator[tuple[str, Any]]:
    while header := stream.read(_FRAME.size):
        if len(header) < _FRAME.size:
            return
        body = stream.read(_FRAME.unpack(header)[0])
        yield pickle.loads(body)  # from our own child, over a pipe only it holds


# -- in the child ------------------------------------------------------------------------------


def _main(fd: int, nice: int) -> None:
    if nice:
        os.nice(nice)
        _lower_autogroup(nice)
    answers = os.fdopen(fd, "wb")
    os.set_inheritable(fd, False)  # the pools' workers must not hold the answer pipe open
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        body = pickle.dumps(message)
        with lock:
            try:
                answers.write(_FRAME.pack(len(body)) + body)
                answers.flush()
            except BrokenPipeError:  # the worker is gone (killed): nobody awaits the answer
                _end_group()

    sys.path[:] = pickle.load(sys.stdin.buffer)
    install(pickle.load(sys.stdin.buffer))  # the strategy files the worker read, by value
    target, args = pickle.load(sys.stdin.buffer)
    threading.Thread(target=_end_with_worker, name="ffe-job-orphan", daemon=True).start()
    try:
        value = target(*args, lambda fraction: send(("progress", fraction)))
    except Exception as exc:  # any failure of the work is the job's answer
        send(("error", f"{type(exc).__name__}: {exc}"))
    else:
        send(("done", value))


def _end_with_worker() -> None:
    """Wait for stdin to close (the worker ended, maybe killed); then end this group."""
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds its lock, and
    # the interpreter aborts at exit when it cannot take it.
    while os.read(sys.stdin.fileno(), 4096):
        continue
    _end_group()


def _end_group() -> None:
    """End this job process's group, this process included: its worker is gone. Whichever
    sees it first (stdin closing, or the answer pipe breaking under a progress report) ends
    the group, quietly: the worker's log has nothing to learn from a broken pipe."""
    os.killpg(0, signal.SIGTERM)
    time.sleep(GRACE_S)
    os.killpg(0, signal.SIGKILL)


def _lower_autogroup(nice: int) -> None:
    """Give this process's scheduling autogroup the same ``nice``. With Linux autogroups on
    (most desktops), each session is one group sharing the CPU fairly with the others, and a
    process's own nice only weighs within its group; this child leads a session of its own,
    so without this its nice changed nothing against the API (measured: a niced sweep kept
    half a core; with the group niced it took a twentieth, bench/README.md). Raising a nice
    needs no privilege; where there are no autogroups the file is missing and nothing
    changes."""
    path = Path("/proc/self/autogroup")
    try:
        if path.exists():
            path.write_text(str(max(-20, min(19, nice))))
    except OSError as exc:  # a read-only /proc in a container: the process nice still holds
        log.debug("autogroup nice not set: %s", exc)


if __name__ == "__main__":
    _main(int(sys.argv[1]), int(sys.argv[2]))
