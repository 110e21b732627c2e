"""The stack's agent against an undisturbed replay of the same bars: its closed trades in the
journal must be the ones a backtest of the same strategy and parameters over the bars it has
stepped through closes (the project's agent == backtest parity, tests/integration/agent/
test_parity.py, applied to a stack that was attacked while the agent ran)."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg


@dataclass
class Parity:
    """What the agent did (from the journal) and what the backtest of the same bars did."""

    run_id: str
    bar: int  # last bar the agent checkpointed
    agent_trades: int
    replay_trades: int
    orders: int
    distinct_orders: int  # distinct client order ids: equal to orders when none is doubled
    fills_twice: int  # orders with more than one fill (a fill recorded twice)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.orders == self.distinct_orders and self.fills_twice == 0


def agent_parity(postgres_url: str, account: str = "paper") -> Parity:
    """Compare the agent's closed trades with a backtest over bars 0..bar (the checkpoint)."""
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT run_id, (checkpoint->>'bar')::int, last_bar_time FROM agent_states "
            "WHERE account = %s",
            (account,),
        ).fetchone()
        if row is None or row[1] is None:
            raise RuntimeError("the agent has no checkpoint yet")
        run_id, bar, bar_time = row
        strategy, params, symbols, config = conn.execute(
            "SELECT strategy, params, symbols, config FROM runs WHERE id = %s", (run_id,)
        ).fetchone()
        orders, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT client_order_id) FROM orders WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT order_id FROM fills WHERE run_id = %s "
            "GROUP BY order_id HAVING count(*) > 1) AS t",
            (run_id,),
        ).fetchone()[0]
    # The agent keeps trading while this reads: a trade it closed after the checkpoint read
    # above is past bar `bar`, so it is left out rather than counted as one too many.
    stored = [
        t for t in asyncio.run(_journal_trades(postgres_url, run_id)) if t.exit_time <= bar_time
    ]
    expected = _replay(strategy, params, symbols, config, bar)
    # The journal is written every few bars, so the agent's last trade may still be on its
    # way: the agent's trades must be the backtest's first ones, at most one short.
    mismatches = [
        f"trade {i}: agent {a} replay {b}"
        for i, (a, b) in enumerate(zip(stored, expected, strict=False))
        if a != b
    ]
    if len(expected) - len(stored) > 1 or len(stored) > len(expected):
        mismatches.append(
            f"the agent closed {len(stored)} trades, the replay of bars 0..{bar} {len(expected)}"
        )
    return Parity(run_id, bar, len(stored), len(expected), orders, distinct, twice, mismatches)


async def _journal_trades(postgres_url: str, run_id: str) -> list[Any]:
    from ffe.store.database import Database
    from ffe.store.repositories import unit_of_work

    db = Database(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        async with unit_of_work(db) as uow:
            return list(await uow.journal.trades(run_id))
    finally:
        await db.dispose()


def _replay(
    strategy: str, params: dict[str, Any], symbols: list[str], config: dict[str, Any], bar: int
) -> Any:
    """An undisturbed paper agent over bars 0..bar, as fast as it goes, into a scratch SQLite
    journal: the same code path as the stack's agent, never killed."""
    from ffe import bootstrap
    from ffe.agent.runner import paper_agent
    from ffe.agent.step import AgentConfig
    from ffe.config import load_settings
    from ffe.data import DataCatalog, load_market
    from ffe.decide.strategy import make_strategy
    from ffe.execution.fill_model import FillModel
    from ffe.store import migrate
    from ffe.store.database import Database

    settings = load_settings()
    with tempfile.TemporaryDirectory() as scratch:
        catalog = DataCatalog(Path(scratch))
        end = load_market(catalog, list(symbols)).times[bar]
        market = load_market(catalog, list(symbols), end=end)

        async def run() -> list[Any]:
            db = Database(f"sqlite:///{Path(scratch) / 'replay.db'}")
            try:
                await migrate.upgrade(db)
                agent = paper_agent(
                    db,
                    market,
                    make_strategy(strategy, params),
                    params,
                    AgentConfig(
                        cash=float(config.get("cash", 10_000.0)),
                        fill=FillModel(**config.get("fill", {})),
                        lot_size=float(config.get("lot_size", 1.0)),
                    ),
                    bootstrap.risk_engine(settings),
                    speed=None,
                )
                await agent.run()
                return list(agent.result(agent.core).trades)
            finally:
                await db.dispose()

        return asyncio.run(run())
