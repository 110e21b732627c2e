"""prometheus_client's multiprocess mode for ffe's metrics, and the job queue's numbers.

Several worker processes (``uvicorn --workers N``, gunicorn) each hold their own counters, and a
scrape reaches only one of them. In multiprocess mode every process writes its values to files
in a shared directory and a scrape merges the files. The mode is chosen when prometheus_client
is first imported, so ``PROMETHEUS_MULTIPROC_DIR`` must be in the environment of the command
that starts the workers (export it in the shell, the container or the unit file), not set from
Python later; the directory must exist and should be emptied before the workers start.

The job queue's gauges (``JobsSnapshot``) are the journal's numbers, not a process's own: they
are collected fresh by whichever process answers the scrape and never merged over processes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ffe.domain.errors import ConfigError

__all__ = [
    "MULTIPROC_ENV",
    "JobsCollector",
    "JobsSnapshot",
    "WorkerJobs",
    "forget_dead_processes",
    "mark_process_dead",
    "merged_registry",
    "resolve_multiprocess_dir",
]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches prometheus_client to multiprocess mode."""


def _multiprocess_enabled() -> bool:
    """True when prometheus_client was imported with the multiprocess directory in the env."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _env_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def resolve_multiprocess_dir(explicit: str | Path | None) -> Path | None:
    """The directory to merge at render time, or None in single-process mode."""
    env = _env_dir()
    wanted = explicit if explicit is not None else env
    if wanted is None:
        if _multiprocess_enabled():
            raise ConfigError(
                f"{MULTIPROC_ENV} was removed from the environment after prometheus_client "
                "was imported: keep it set for the life of the process"
            )
        return None
    path = Path(wanted)
    if not _multiprocess_enabled():
        raise ConfigError(
            f"multiprocess metrics need {MULTIPROC_ENV}={path} in the environment before "
            "prometheus_client is first imported: export it where the workers are started"
        )
    if env is None or Path(env).resolve() != path.resolve():
        raise ConfigError(
            f"multiprocess_dir {path} differs from {MULTIPROC_ENV}={env}, where this "
            "process writes its values: use the same directory"
        )
    if not path.is_dir():
        raise ConfigError(f"{MULTIPROC_ENV}={path} is not a directory: create it (empty)")
    return path


@dataclass(frozen=True, slots=True)
class WorkerJobs:
    """One worker's jobs: how many it runs now, and has finished and failed since it started."""

    worker: str
    kind: str
    running: int
    finished: int
    failed: int


@dataclass(frozen=True, slots=True)
class JobsSnapshot:
    """The job queue as the journal shows it: queued and running jobs, and the live workers."""

    queued: int = 0
    running: int = 0
    workers: tuple[WorkerJobs, ...] = field(default_factory=tuple)


class JobsCollector(Collector):
    """Exports the last ``JobsSnapshot``. The numbers are the journal's, read by whichever
    process answers the scrape, not this process's own: so they are collected here, fresh,
    and never summed over the processes of a multiprocess directory."""

    def __init__(self) -> None:
        self.snapshot = JobsSnapshot()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        yield GaugeMetricFamily(
            "ffe_job_queue_depth",
            "Jobs queued in the journal, waiting for any worker.",
            value=snapshot.queued,
        )
        yield GaugeMetricFamily(
            "ffe_jobs_running", "Jobs running on any worker.", value=snapshot.running
        )
        yield GaugeMetricFamily(
            "ffe_workers_alive",
            "Processes running jobs that beat now.",
            value=len(snapshot.workers),
        )
        jobs = GaugeMetricFamily(
            "ffe_worker_jobs",
            "Each live worker's jobs: running now, finished and failed since it started.",
            labels=["worker", "kind", "state"],
        )
        for each in snapshot.workers:
            for state in ("running", "finished", "failed"):
                jobs.add_metric([each.worker, each.kind, state], getattr(each, state))
        yield jobs


def mark_process_dead(pid: int, multiprocess_dir: str | Path | None = None) -> None:
    """Drop a dead worker's live gauges (breaker state) in multiprocess mode.

    Call it from the process manager when a worker exits (gunicorn's ``child_exit`` hook).
    The directory defaults to ``PROMETHEUS_MULTIPROC_DIR``; nothing happens without one.
    """
    path = str(multiprocess_dir) if multiprocess_dir is not None else _env_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def forget_dead_processes(directory: Path) -> list[int]:
    """Drop the live gauges of every process that wrote to ``directory`` and is gone; the pids."""
    dead = sorted(
        {
            pid
            for path in directory.glob("gauge_live*_*.db")
            if (pid := _pid_of(path.stem)) is not None and not _alive(pid)
        }
    )
    for pid in dead:  # workers start together: another may be removing the same files
        for path in directory.glob(f"gauge_live*_{pid}.db"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return dead


def merged_registry(directory: Path, jobs: JobsCollector) -> CollectorRegistry:
    """A registry of every process's values in ``directory``, with the job queue's numbers as
    this process just read them."""
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=str(directory))  # type: ignore[no-untyped-call]
    merged.register(jobs)
    return merged


def _pid_of(stem: str) -> int | None:
    """The process id in a multiprocess file's name (``gauge_livesum_1234``)."""
    tail = stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
