"""A journal writer killed at random moments (SIGKILL) loses nothing it reported committed and
never leaves half a transaction behind, on SQLite (WAL) and on PostgreSQL.

The writer (``journal_writer.py``) runs as a child process and reports each batch on a pipe
right after its commit returns. The test kills it after a random delay (seeded), checks the
journal, and starts it again; it carries on from the last batch the journal holds.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from ffe.store.database import Database
from ffe.store.models import AuditEntry, Decision
from ffe.store.repositories import unit_of_work

WRITER = Path(__file__).with_name("journal_writer.py")
ACTOR = "journal_writer"  # as in journal_writer.py
BATCH_ROWS = 100
KILLS = {"sqlite": 25, "postgresql": 10}
MAX_DELAY_S = 0.2  # of writing before the kill: room for several commits
START_TIMEOUT_S = 60.0

pytestmark = pytest.mark.slow


@dataclass
class Life:
    """What one writer process printed before it was killed."""

    resumed_after: int
    committed: list[int]


@dataclass
class Journal:
    """The batches a journal holds: rows per batch number, and the audited batch numbers."""

    rows: dict[int, int] = field(default_factory=dict)
    audited: list[int] = field(default_factory=list)

    @property
    def batches(self) -> list[int]:
        return sorted(self.rows)


async def new_run(db: Database) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="paper", strategy="durability", code_version="t")
        return run.id


async def live_and_die(url: str, run_id: str, delay: float) -> Life:
    """Start the writer, let it write for ``delay`` seconds, SIGKILL it, collect its output."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        url,
        run_id,
        str(BATCH_ROWS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    try:
        first = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_S)
        if first.startswith(b"resume "):
            await asyncio.sleep(delay)
    finally:
        if child.returncode is None:
            child.kill()
        rest, err = await child.communicate()
    stderr = err.decode(errors="replace")
    assert first.startswith(b"resume "), f"the writer did not start:\n{stderr}"
    assert child.returncode == -signal.SIGKILL, f"the writer died by itself:\n{stderr}"
    return Life(int(first.split()[1]), [int(line) for line in rest.split()])


async def settle(db: Database) -> None:
    """On PostgreSQL, wait until the server is done with the killed writer's session: a
    COMMIT it sent just before it died may still be in flight, and its next life must not
    read the journal before that commit lands (or is dropped)."""
    if db.is_sqlite:
        return
    busy = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with db.engine.connect() as connection:
            if (await connection.execute(busy)).scalar_one() == 0:
                return
        await asyncio.sleep(0.02)
    pytest.fail("the killed writer's session is still busy on the server after 10 s")


async def read_journal(db: Database, run_id: str) -> Journal:
    per_batch = (
        select(Decision.inputs_fingerprint, func.count())
        .where(Decision.run_id == run_id)
        .group_by(Decision.inputs_fingerprint)
    )
    audited = select(AuditEntry.target).where(AuditEntry.actor == ACTOR)
    async with unit_of_work(db) as uow:
        rows = {int(str(number)): count for number, count in await uow.session.execute(per_batch)}
        targets = sorted(int(str(target)) for target in await uow.session.scalars(audited))
    return Journal(rows, targets)


def check(journal: Journal, reported: set[int], newest_known: int, where: str) -> None:
    """Everything reported is there, whole; nothing else is, except at most the one batch
    whose commit landed but whose report did not get out before the kill.

    ``newest_known`` is the newest batch this life is known to have committed: the last it
    reported, or the batch it resumed after. (Not the newest reported by any life: a life
    may resume after an unreported batch of the one before it.)"""
    partial = {number: n for number, n in journal.rows.items() if n != BATCH_ROWS}
    assert not partial, f"{where}: batches not of {BATCH_ROWS} rows (half written?): {partial}"
    batches = journal.batches
    assert batches == list(range(1, len(batches) + 1)), f"{where}: a batch is missing"
    lost = sorted(reported - set(batches))
    assert not lost, f"{where}: reported committed but not in the journal: {lost}"
    assert len(batches) in (newest_known, newest_known + 1), (
        f"{where}: the journal holds batches up to {len(batches)}, "
        f"the writer reported (or resumed after) up to {newest_known}"
    )
    assert journal.audited == batches, f"{where}: audit entries and batches differ"


async def test_writer_when_killed_at_random_then_journal_holds_exactly_whole_commits(
    db: Database, database_url: str
):
    engine = "sqlite" if db.is_sqlite else "postgresql"
    delays = random.Random(f"durability-{engine}")
    run_id = await new_run(db)
    reported: set[int] = set()
    holds = 0
    for kill in range(1, KILLS[engine] + 1):
        delay = delays.uniform(0.0, MAX_DELAY_S)
        life = await live_and_die(database_url, run_id, delay)
        where = f"{engine}, kill {kill} after {delay * 1e3:.0f} ms"
        assert life.resumed_after == holds, f"{where}: did not resume after batch {holds}"
        expected = list(range(holds + 1, holds + 1 + len(life.committed)))
        assert life.committed == expected, f"{where}: reported batches out of sequence"
        reported.update(life.committed)
        await settle(db)
        journal = await read_journal(db, run_id)
        check(journal, reported, max(life.committed, default=life.resumed_after), where)
        assert await db.integrity_problems() == [], where
        holds = len(journal.batches)
    assert holds >= KILLS[engine], f"{engine}: only {holds} batches in {KILLS[engine]} lives"
