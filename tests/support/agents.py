"""Agents for integration tests: a paper agent replaying the bundled S&P 500 into a journal of
the test's own, and a publisher keeping what is published (an agent's reporter, the journal
tail)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ffe.agent.runner import Agent, paper_agent
from ffe.agent.step import AgentConfig
from ffe.data import DataCatalog, load_market
from ffe.decide.strategy import make_strategy
from ffe.execution.fill_model import FillModel
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database

SMA_PARAMS = {"fast": 5, "slow": 10}  # trades often on daily bars: fills within weeks


class Recorder:
    """A publisher keeping what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]


@asynccontextmanager
async def sqlite_journal(folder: Path) -> AsyncIterator[Database]:
    """A migrated journal in ``folder``, closed after."""
    database = Database(f"sqlite:///{folder / 'journal.db'}")
    await migrate.upgrade(database)
    try:
        yield database
    finally:
        await database.dispose()


def replay_agent(
    db: Database,
    data_dir: Path,
    strategy: str = "sma_cross",
    *,
    start: str = "2014-01-01",
    end: str | None = None,
    speed: float | None = None,
    risk: RiskEngine | None = None,
    params: dict[str, Any] | None = None,
    **config: Any,
) -> Agent:
    """A paper agent replaying SP500 from ``start`` (sma_cross with ``SMA_PARAMS``, any other
    strategy with its defaults, unless ``params``), commission 0.1 %, no drawdown limit unless
    ``risk`` says otherwise; ``config`` sets the rest of its ``AgentConfig``."""
    market = load_market(DataCatalog(data_dir), ["SP500"], start=start, end=end)
    if risk is None:
        risk = RiskEngine.from_limits(
            max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None
        )
    chosen = AgentConfig(**{"fill": FillModel(commission=0.001), **config})
    if params is None:
        params = SMA_PARAMS if strategy == "sma_cross" else {}
    made = make_strategy(strategy, params)
    return paper_agent(db, market, made, params, chosen, risk, speed=speed)
