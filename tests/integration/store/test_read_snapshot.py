"""The portfolio's journal reads see one state: what an agent commits between two of them
is not half seen (cash and equity of one moment, positions of another)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from ffe.api.queries import read_snapshot
from ffe.store.models import EquityPoint
from ffe.store.repositories import unit_of_work

T = datetime(2018, 1, 2, tzinfo=UTC)


async def _points(session) -> int:
    return int(await session.scalar(select(func.count()).select_from(EquityPoint)) or 0)


async def test_read_snapshot_when_an_agent_commits_between_two_reads_then_neither_sees_it(db):
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="paper", strategy="sma_cross", code_version="test")
        run_id = run.id

    async with read_snapshot(db) as session:
        before = await _points(session)
        async with unit_of_work(db) as uow:  # the agent's flush, on another connection
            await uow.journal.add_equity(run_id, [T], [100.0])
        after = await _points(session)

    async with read_snapshot(db) as session:
        now = await _points(session)
    assert (before, after, now) == (0, 0, 1)
