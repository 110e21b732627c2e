from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ffe.store.database import Database
from ffe.store.models import (
    AgentCommand,
    AgentState,
    ApiKey,
    Approval,
    CacheEntry,
    Decision,
    DecisionOutcome,
    Fill,
    Job,
    Order,
    PositionSnapshot,
    RiskVerdict,
    TradeRow,
    User,
    Worker,
)
from ffe.store.repositories import unit_of_work

# --- a journal with rows in every table, for copies, backups and restores -----------------

FillJournal = Callable[[Database], Awaitable[None]]
T0 = datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
PLUS_FIVE = timezone(timedelta(hours=5))


async def _fill_journal(db: Database, n: int = 12) -> None:
    """Rows in every journal table, with values engines like to change: microseconds, instants
    given in another zone, tiny, huge and negative floats, nested JSON, non-ASCII text,
    NULLs and booleans."""
    async with unit_of_work(db) as uow:
        session = uow.session
        runs = [
            await uow.runs.add(
                kind=kind,
                strategy="sma_cross",
                code_version="t",
                params={"fast": 10, "nested": {"b": [1, 2.5], "a": None}},
                symbols=["SP500", "ÉTF-€"],
                config={"cash": 1e4, "tiny": 1e-300},
                started_at=T0.astimezone(PLUS_FIVE),
            )
            for kind in ("backtest", "paper")
        ]
        await uow.runs.finish(runs[0], {"sharpe": 0.1 + 0.2, "cagr": None})
        for run in runs:
            await uow.journal.add_decisions(
                run.id,
                [
                    {
                        "time": T0 + timedelta(minutes=i),
                        "symbol": "SP500",
                        "target": (i % 3 - 1) * 0.1,
                        "confidence": None if i % 4 == 0 else 1 / (i + 3),
                        "rationale": f"décision {i}",
                        "votes": {"ets": -1e-9 * i, "arima": [i, None]},
                    }
                    for i in range(n)
                ],
            )
            await uow.journal.add_equity(
                run.id,
                [T0 + timedelta(days=i) for i in range(n)],
                [1e4 + i * 0.01 for i in range(n)],
                benchmark=[None if i == 0 else 1e4 - i for i in range(n)],
            )
        decisions = list((await session.scalars(select(Decision.id).order_by(Decision.id))).all())
        await _fill_orders(session, runs[0].id, decisions[:n])
        await _fill_accounts(session, decisions[:n])
        await _fill_agent(session, runs[1].id, decisions[n:])
        for i in range(3):
            await uow.audit.record("tester", f"action.{i}", f"target {i}", {"i": i, "ok": True})


async def _fill_orders(session: AsyncSession, run_id: str, decisions: list[int]) -> None:
    rows = range(len(decisions))
    await session.execute(
        insert(RiskVerdict),
        [
            {
                "run_id": run_id,
                "decision_id": decision,
                "time": T0 + timedelta(seconds=i),
                "symbol": "SP500",
                "approved": i % 2 == 0,
                "requested_quantity": 10.0 + i,
                "approved_quantity": 10.0 + i if i % 2 == 0 else 0.0,
                "check_name": None if i % 2 == 0 else "max_position",
                "reason": None if i % 2 == 0 else "too big",
            }
            for i, decision in enumerate(decisions)
        ],
    )
    await session.execute(
        insert(Order),
        [
            {
                "run_id": run_id,
                "client_order_id": f"c-{run_id[:6]}-{i}",
                "decision_id": decisions[i],
                "time": T0 + timedelta(seconds=i),
                "symbol": "SP500",
                "quantity": -2.5 if i % 2 else 3.0,
                "limit_price": None if i % 3 else 99.125,
                "status": "filled",
                "filled_quantity": -2.5 if i % 2 else 3.0,
            }
            for i in rows
        ],
    )
    orders = list((await session.scalars(select(Order.id).order_by(Order.id))).all())
    await session.execute(
        insert(Fill),
        [
            {
                "run_id": run_id,
                "order_id": order,
                "time": T0 + timedelta(seconds=i, microseconds=7),
                "symbol": "SP500",
                "quantity": 1.5,
                "price": 100.0 + i / 7,
                "commission": 0.002,
            }
            for i, order in enumerate(orders)
        ],
    )
    await session.execute(
        insert(TradeRow),
        [
            {
                "run_id": run_id,
                "symbol": "SP500",
                "entry_time": T0 + timedelta(days=i),
                "exit_time": T0 + timedelta(days=i + 1),
                "entry_price": 100.0,
                "exit_price": 101.0 - i,
                "quantity": -1.0 if i % 2 else 1.0,
                "pnl": 1.0 - i,
            }
            for i in rows
        ],
    )
    await session.execute(
        insert(PositionSnapshot),
        [
            {
                "run_id": run_id,
                "time": T0 + timedelta(hours=i),
                "symbol": "SP500",
                "quantity": float(i),
                "average_price": None if i == 0 else 100.5,
                "mark_price": 100.75,
            }
            for i in rows
        ],
    )


async def _fill_accounts(session: AsyncSession, decisions: list[int]) -> None:
    await session.execute(
        insert(DecisionOutcome),
        [
            {
                "decision_id": decision,
                "horizon": 5,
                "realized_return": -0.015 * i,
                "hit": None if i == 0 else i % 2 == 0,
                "resolved_at": T0 + timedelta(days=5 + i),
            }
            for i, decision in enumerate(decisions)
        ],
    )
    session.add_all(
        [
            Job(
                id=f"{i:032x}",
                kind="backtest",
                status="finished",
                payload={"i": i},
                result={"sharpe": 1.5},
                progress=1.0,
                finished_at=T0,
            )
            for i in range(1, 4)
        ]
    )
    session.add_all(
        [
            Worker(
                id=f"host:{i}:ab",
                kind="worker",
                host="hôte",
                pid=i,
                concurrency=2,
                heartbeat_at=T0,
                stopped_at=None if i == 1 else T0,
                running=i - 1,
                finished=3 * i,
                failed=i % 2,
            )
            for i in range(1, 3)
        ]
    )
    session.add_all(
        [
            CacheEntry(key="analysis:SP500", value={"price": 1e3, "bands": [1, 2]}, expires_at=T0),
            CacheEntry(key="analysis:ÜBER", value=[1, None, "x"], expires_at=T0),
        ]
    )
    users = [
        User(username=f"user{i}", password_hash="x" * 60, role=role, disabled=i == 2)
        for i, role in enumerate(("viewer", "trader", "admin"))
    ]
    session.add_all(users)
    await session.flush()
    session.add_all(
        [
            ApiKey(
                name=f"key {u.username}",
                prefix=f"ffe_{u.id:04d}",
                key_hash="h" * 64,
                scopes=["read", "trade"],
                user_id=u.id,
                last_used_at=None if u.id % 2 else T0,
            )
            for u in users
        ]
    )


async def _fill_agent(session: AsyncSession, run_id: str, decisions: list[int]) -> None:
    session.add_all(
        [
            AgentState(
                account="paper",
                run_id=run_id,
                status="halted",
                owner="host:1:ab",
                lease_expires_at=T0,
                halted_reason="emergency stop by cli",
                last_bar_time=T0,
                checkpoint={"bar": 12, "risk": {"equity": None}},
            ),
            AgentState(account="überkonto", status="stopped"),
            AgentCommand(
                account="paper",
                command="emergency_stop",
                actor="cli",
                handled_at=T0.astimezone(PLUS_FIVE),
                result="taken",
            ),
            AgentCommand(account="paper", command="reset", actor="api"),
        ]
    )
    session.add_all(
        [
            Approval(
                run_id=run_id,
                account="paper",
                decision_id=decision if i else None,
                client_order_id=f"{run_id[:10]}-{i}-0",
                time=T0 + timedelta(hours=i),
                symbol="SP500",
                quantity=-1.5 * i,
                reference_price=2e3 + 1e-9 * i,
                rationale=None if i == 1 else f"raison {i}",
                status=("pending", "approved", "rejected", "expired", "sent")[i % 5],
                expires_at=T0 + timedelta(days=1),
                decided_by=None if i % 2 else "tester",
            )
            for i, decision in enumerate(decisions[:5])
        ]
    )


@pytest.fixture
def fill_journal() -> FillJournal:
    """An async function that puts rows in every table of a migrated journal."""
    return _fill_journal
