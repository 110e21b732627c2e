"""Repositories and the unit of work, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ffe.domain.errors import NotFoundError, StoreError
from ffe.domain.orders import Trade
from ffe.store.models import ApiKey, Decision, Order, Run
from ffe.store.repositories import unit_of_work

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _decisions(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "time": T0 + timedelta(days=start + i),
            "symbol": "SP500",
            "target": (start + i) % 3 - 1.0,
            "confidence": 0.5,
            "rationale": f"decision {start + i}",
            "votes": {"ets": 0.25, "arima": -0.5},
        }
        for i in range(n)
    ]


async def _new_run(db, **overrides) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(
            **{"kind": "backtest", "strategy": "sma_cross", "code_version": "t", **overrides}
        )
        return run.id


async def test_run_when_added_and_finished_then_read_back_whole(db):
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(
            kind="backtest",
            strategy="sma_cross",
            code_version="0.1.0",
            params={"fast": 10, "slow": 20},
            symbols=["SP500"],
            timeframe="1d",
            config={"cash": 10_000.0},
            data_fingerprint="ab" * 32,
        )
        await uow.runs.finish(run, {"sharpe": 1.25, "n_trades": 3, "cagr": None})

    async with unit_of_work(db) as uow:
        stored = await uow.runs.get(run.id[:6])

    assert stored.id == run.id
    assert stored.status == "finished"
    assert stored.params == {"fast": 10, "slow": 20}
    assert stored.stats == {"sharpe": 1.25, "n_trades": 3, "cagr": None}
    assert stored.started_at.tzinfo is not None
    assert stored.finished_at >= stored.started_at


async def test_decisions_when_batch_written_then_last_n_newest_first(db):
    run_id = await _new_run(db)
    async with unit_of_work(db) as uow:
        assert await uow.journal.add_decisions(run_id, _decisions(1500)) == 1500
    async with unit_of_work(db) as uow:
        last = await uow.journal.last_decisions(run_id, limit=1000)

    assert len(last) == 1000
    assert last[0].rationale == "decision 1499"
    assert last[-1].rationale == "decision 500"
    assert last[0].time == T0 + timedelta(days=1499)
    assert last[0].votes == {"ets": 0.25, "arima": -0.5}


async def test_unit_of_work_when_block_raises_then_nothing_kept(db):
    run_id = await _new_run(db)

    async def crash_half_way() -> None:
        async with unit_of_work(db) as uow:
            await uow.journal.add_decisions(run_id, _decisions(10))
            raise RuntimeError("crash half way")

    with pytest.raises(RuntimeError):
        await crash_half_way()

    async with unit_of_work(db) as uow:
        assert await uow.journal.count(Decision, run_id) == 0


async def test_write_when_batch_has_a_bad_row_then_store_error_and_batch_not_kept(db):
    run_id = await _new_run(db)
    rows = _decisions(5)
    rows[3]["time"] = datetime(2020, 1, 4)  # naive: refused, never guessed

    with pytest.raises(StoreError, match="naive datetime"):
        async with unit_of_work(db) as uow:
            await uow.journal.add_decisions(run_id, rows)

    async with unit_of_work(db) as uow:
        assert await uow.journal.count(Decision, run_id) == 0


async def test_order_when_client_order_id_repeats_then_refused(db):
    run_id = await _new_run(db)
    async with unit_of_work(db) as uow:
        await uow.journal.add_order(
            Order(run_id=run_id, client_order_id="ffe-1", time=T0, symbol="SP500", quantity=1.0)
        )

    with pytest.raises(StoreError, match="already recorded"):
        async with unit_of_work(db) as uow:
            await uow.journal.add_order(
                Order(run_id=run_id, client_order_id="ffe-1", time=T0, symbol="SP500", quantity=2.0)
            )

    async with unit_of_work(db) as uow:
        kept = await uow.journal.order_by_client_id("ffe-1")
    assert kept is not None
    assert kept.quantity == 1.0


async def test_trades_and_equity_when_written_then_read_back_exactly(db):
    run_id = await _new_run(db)
    trades = [
        Trade("SP500", T0, T0 + timedelta(days=3), 100.125, 99.5, -2.0, 1.2345678901234, 0.4),
        Trade("SP500", T0 + timedelta(days=3), T0 + timedelta(days=9), 99.5, 101.0, 3.0, 4.5),
    ]
    times = [T0 + timedelta(days=i) for i in range(4)]
    async with unit_of_work(db) as uow:
        await uow.journal.add_trades(run_id, trades)
        await uow.journal.add_equity(run_id, times, [1.0, 1.1, 0.9, 1.2], benchmark=[1, None, 2, 3])

    async with unit_of_work(db) as uow:
        assert await uow.journal.trades(run_id) == trades
        points = await uow.journal.equity(run_id)
    assert [p.time for p in points] == times
    assert [p.equity for p in points] == [1.0, 1.1, 0.9, 1.2]
    assert [p.benchmark for p in points] == [1, None, 2, 3]


async def test_run_when_deleted_then_its_rows_go_with_it(db):
    run_id = await _new_run(db)
    async with unit_of_work(db) as uow:
        await uow.journal.add_decisions(run_id, _decisions(3))
    async with unit_of_work(db) as uow:
        await uow.runs.delete(await uow.runs.get(run_id))

    async with unit_of_work(db) as uow:
        assert await uow.journal.count(Decision, run_id) == 0
        assert (await uow.session.scalars(select(Run))).all() == []
    assert await db.integrity_problems() == []


async def test_runs_get_when_prefix_unknown_or_ambiguous_or_not_hex_then_clear_error(db):
    await _new_run(db)
    async with unit_of_work(db) as uow:
        with pytest.raises(NotFoundError, match="no run"):
            await uow.runs.get("0000000000000000")
        with pytest.raises(NotFoundError, match="not a run id"):
            await uow.runs.get("x%")


async def test_runs_list_when_filtered_then_newest_first(db):
    first = await _new_run(db, started_at=T0)
    second = await _new_run(db, started_at=T0 + timedelta(hours=1), strategy="momentum")

    async with unit_of_work(db) as uow:
        everything = [r.id for r in await uow.runs.list()]
        momentum = [r.id for r in await uow.runs.list(strategy="momentum")]

    assert everything == [second, first]
    assert momentum == [second]


async def test_api_keys_when_stored_then_only_prefix_and_hash_kept(db):
    secret = "ffe_live_0123456789abcdef"
    async with unit_of_work(db) as uow:
        uow.session.add(ApiKey(name="ci", prefix=secret[:12], key_hash="$argon2id$v=19$stub"))

    columns = set(ApiKey.__table__.columns.keys())
    assert "key" not in columns
    assert "secret" not in columns
    async with db.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("SELECT * FROM api_keys")).all()
    assert all(secret not in str(value) for row in rows for value in row)


async def test_audit_when_recorded_then_listed_newest_first(db):
    async with unit_of_work(db) as uow:
        await uow.audit.record("cli", "db.restore", "backup-1", {"rows": 3})
        await uow.audit.record("api:key-1", "agent.stop")
    async with unit_of_work(db) as uow:
        entries = await uow.audit.recent()
    assert [e.action for e in entries] == ["agent.stop", "db.restore"]
    assert entries[1].details == {"rows": 3}
