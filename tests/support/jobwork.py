"""Stand-in work for jobs, put in ``ffe.service.jobs.work.WORK`` by tests (in this process with
``use``; in an ``ffe worker`` process started by ``standin_ffe.py``). A job's work runs in a
process of its own, which finds it by module and name: so it is defined here, not inside a
test, and imported as the top-level module ``jobwork`` (a job process cannot import
``tests.support``: a dependency installs a package named ``tests``)."""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest


def use(monkeypatch: pytest.MonkeyPatch, kind: str, name: str) -> None:
    """Make jobs of ``kind`` run the function ``name`` of this module in their processes."""
    from ffe.service.jobs.work import WORK

    # A job process starts with the server's sys.path.
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    work = getattr(importlib.import_module("jobwork"), name)
    monkeypatch.setitem(WORK, kind, work)


def instant(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Done at once."""
    return {"instant": True}, None


def tally(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Add a line to the file ``payload["tally"]`` each time it runs."""
    with Path(payload["tally"]).open("a") as file:
        file.write("ran\n")
    return {"ok": True}, None


def mark(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Add ``payload["mark"]`` and the pid of the worker running it (this process's parent) as
    a line to the file ``payload["tally"]``, after ``payload["sleep_s"]`` (default none)."""
    time.sleep(float(payload.get("sleep_s", 0)))
    with Path(payload["tally"]).open("a") as file:
        file.write(f"{payload['mark']} {os.getppid()}\n")
    return {"ok": True}, None


def slow_first(
    components: Any, payload: dict[str, Any], progress: Any
) -> tuple[dict[str, Any], None]:
    """A minute the first time (a worker is killed under it), at once the next: the file
    ``payload["marker"]`` says whether it ran before."""
    marker = Path(payload["marker"])
    first = not marker.exists()
    marker.write_text(f"{os.getppid()}\n")
    progress(0.5)
    if first:
        time.sleep(60)
    return {"first": first}, None


def nice(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """The job process's CPU niceness, and its autogroup's (None without autogroups)."""
    group = None
    with contextlib.suppress(OSError):
        group = int(Path("/proc/self/autogroup").read_text().split("nice")[1])
    return {"nice": os.nice(0), "autogroup": group}, None


def stubborn(
    components: Any, payload: dict[str, Any], progress: Any
) -> tuple[dict[str, Any], None]:
    """One long unit of work that never looks at a stop flag (``payload["sleep_s"]``)."""
    progress(0.5)
    time.sleep(float(payload.get("sleep_s", 60)))
    return {"ok": True}, None


def broken(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Fails the way work fails on bad input."""
    progress(0.25)
    raise ValueError("no bars for XYZ: import them first")


def killed(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Dies the way the system's out-of-memory killer ends a process: SIGKILL, no answer."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    return {"ok": True}, None


def pool_sleeper(
    components: Any, payload: dict[str, Any], progress: Any
) -> tuple[dict[str, Any], None]:
    """Keep a pool of two worker processes busy for a minute (a sweep that will not end)."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        sleeping = [pool.submit(time.sleep, 60) for _ in range(2)]
        progress(0.5)
        for each in sleeping:
            each.result()
    return {"ok": True}, None


def deaf(components: Any, payload: dict[str, Any], progress: Any) -> tuple[dict[str, Any], None]:
    """Ignore SIGTERM (as work with a handler of its own may), say so, then sleep a minute."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    progress(0.5)
    time.sleep(60)
    return {"ok": True}, None


def pool_reporting(
    components: Any, payload: dict[str, Any], progress: Any
) -> tuple[dict[str, Any], None]:
    """A sweep under way: a pool's worker busy for a minute, and progress reported every
    0.05 s meanwhile."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        sleeping = pool.submit(time.sleep, 60)
        while not sleeping.done():
            progress(0.5)
            time.sleep(0.05)
    return {"ok": True}, None
