"""The journal's hot reads go through indexes, not scans of a run's every row."""

from __future__ import annotations

from sqlalchemy import text

from ffe.store.database import Database

PEAK = "SELECT max(equity) FROM equity_points WHERE run_id = 'abcd'"


async def test_run_peak_equity_when_planned_then_read_from_the_index(db: Database) -> None:
    async with db.engine.connect() as connection:
        if db.is_sqlite:
            rows = (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {PEAK}")).all()
            plan = " ".join(str(row[-1]) for row in rows)
            assert "USING COVERING INDEX ix_equity_points_run_id_equity" in plan, plan
        else:
            # PostgreSQL may prefer a scan of an empty table; with scans off it must still
            # find an index that answers the query by itself.
            await connection.execute(text("SET enable_seqscan = off"))
            rows = (await connection.exec_driver_sql(f"EXPLAIN {PEAK}")).all()
            plan = " ".join(str(row[0]) for row in rows)
            assert "ix_equity_points_run_id_equity" in plan, plan
