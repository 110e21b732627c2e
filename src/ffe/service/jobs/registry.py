"""The workers registry (the journal's ``workers`` table): each process that runs jobs says who
it is when it starts, beats every ``jobs.heartbeat_s`` with how many jobs it runs, has finished
and has failed, and marks itself stopped on a clean exit. A worker is alive while it beats
(``jobs.stale_s``); one killed outright stops beating and so stops counting. On PostgreSQL the
beats are stamped and judged by the journal's clock (``journal_now``), so workers on machines
whose clocks disagree still judge each other right.

The API reads it to say when queued jobs wait for a worker that is not there, and ``/metrics``
to export each worker's counts.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, DateTime, delete, func, select, update

from ffe.store.database import Database
from ffe.store.models import Worker

FORGET_AFTER = timedelta(days=1)  # rows of workers gone this long are deleted


def journal_now(db: Database) -> datetime | ColumnElement[datetime]:
    """Now, as heartbeats are stamped and judged stale: by the journal's own clock on
    PostgreSQL, where workers on several machines beat into one journal and their clocks may
    disagree by more than ``jobs.stale_s`` allows (a worker a minute behind would look dead to
    the others while it beats); by this machine's on SQLite, which one machine shares."""
    return datetime.now(UTC) if db.is_sqlite else func.now(type_=DateTime(timezone=True))


def worker_id() -> str:
    """A new worker's id, the owner its jobs name: host, process id and a random part (a
    restarted container may reuse both host name and process id)."""
    return f"{socket.gethostname()[:96]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class WorkerCounts:
    """How many jobs a worker runs now, and has finished and failed since it started."""

    running: int = 0
    finished: int = 0
    failed: int = 0


class WorkerRegistry:
    """The ``workers`` table of one journal."""

    def __init__(self, db: Database, stale_s: float) -> None:
        self.db, self.stale_s = db, stale_s

    async def register(self, worker: str, kind: str, concurrency: int) -> None:
        """Record a worker that starts now (``kind``: worker, api or run)."""
        now = datetime.now(UTC)
        row = Worker(
            id=worker,
            kind=kind,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            concurrency=concurrency,
            started_at=now,
            heartbeat_at=now,
            running=0,
            finished=0,
            failed=0,
        )
        async with self.db.session() as session:
            await session.merge(row)
            if not self.db.is_sqlite:  # stamped by the journal's clock (``journal_now``)
                await session.flush()
                await session.execute(
                    update(Worker)
                    .where(Worker.id == worker)
                    .values(started_at=func.now(), heartbeat_at=func.now())
                    .execution_options(synchronize_session=False)
                )

    async def beat(self, worker: str, counts: WorkerCounts) -> bool:
        """Say the worker is alive, with its counts; False when its row is gone (forgotten
        after a long outage: register it again)."""
        async with self.db.session() as session:
            beat = await session.execute(
                update(Worker)
                .where(Worker.id == worker)
                .values(
                    heartbeat_at=journal_now(self.db),
                    stopped_at=None,
                    running=counts.running,
                    finished=counts.finished,
                    failed=counts.failed,
                )
                .execution_options(synchronize_session=False)
            )
        return bool(beat.rowcount == 1)  # type: ignore[attr-defined]

    async def stopped(self, worker: str, counts: WorkerCounts) -> None:
        """Mark the worker stopped (a clean exit), with its last counts."""
        async with self.db.session() as session:
            await session.execute(
                update(Worker)
                .where(Worker.id == worker)
                .values(
                    stopped_at=datetime.now(UTC),
                    running=0,
                    finished=counts.finished,
                    failed=counts.failed,
                )
                .execution_options(synchronize_session=False)
            )

    async def alive(self) -> list[Worker]:
        """The workers beating now, oldest first."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(Worker).where(self._alive()).order_by(Worker.started_at, Worker.id)
            )
            return list(rows.all())

    async def count_alive(self) -> int:
        """How many workers beat now."""
        async with self.db.session() as session:
            found = await session.scalar(
                select(func.count()).select_from(Worker).where(self._alive())
            )
        return int(found or 0)

    async def forget_gone(self) -> int:
        """Delete the rows of workers silent for ``FORGET_AFTER``; how many."""
        before = journal_now(self.db) - FORGET_AFTER
        async with self.db.session() as session:
            gone = await session.execute(
                delete(Worker)
                .where(Worker.heartbeat_at < before)
                .execution_options(synchronize_session=False)
            )
        return int(gone.rowcount)  # type: ignore[attr-defined]

    def _alive(self) -> ColumnElement[bool]:
        since = journal_now(self.db) - timedelta(seconds=self.stale_s)
        return Worker.stopped_at.is_(None) & (Worker.heartbeat_at >= since)
