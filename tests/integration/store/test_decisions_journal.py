"""The ensemble's decisions in the journal, on SQLite and PostgreSQL: each decision with its
rationale and votes, and an outcome once its horizon has passed inside the data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from arch.data import sp500

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.decide.ensemble import EnsembleStrategy
from ffe.domain import MarketData
from ffe.runs.journal import record_backtest
from ffe.store.database import Database
from ffe.store.repositories import unit_of_work

HORIZON = 7  # longer than the 3 bars between decisions: the last few stay unresolved
N_BARS = 451  # decisions at bars 149, 152, ...: the one at 443 is judged on the last bar


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    frame = sp500.load()
    rows = frame.iloc[int(frame.index.searchsorted("2002-01-01")) :][:N_BARS]
    columns = [rows[name].to_numpy()[:, None] for name in ("Open", "High", "Low", "Close")]
    market = MarketData(("SP500",), rows.index.to_numpy(), *columns, np.ones((len(rows), 1)))
    strategy = EnsembleStrategy(
        models="naive,drift,garch",
        window=150,
        refit_every=50,
        workers=1,
        horizon=HORIZON,
        every=3,
    )
    # The look-ahead check reruns the strategy; it is tested elsewhere.
    return run_backtest(market, strategy, BacktestConfig(check_lookahead=False))


async def _recorded(db: Database, result: BacktestResult) -> list[Any]:
    run_id = await record_backtest(db, result)
    async with unit_of_work(db) as uow:
        return list(await uow.journal.decisions_with_outcomes(run_id))


def _bar(result: BacktestResult, row: Any) -> int:
    (bar,) = np.flatnonzero(result.market.times == np.datetime64(row.time.replace(tzinfo=None)))
    return int(bar)


async def test_record_backtest_when_ensemble_then_every_decision_stored_in_order(
    db: Database, result: BacktestResult
) -> None:
    rows = await _recorded(db, result)

    assert len(rows) == len(result.decisions) > 50
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    for row, decision in zip(rows, result.decisions, strict=True):
        assert row.time == decision.time
        assert row.symbol == "SP500"
        assert row.rationale == decision.rationale
        assert row.confidence == pytest.approx(decision.confidence, rel=1e-12)
        assert row.votes["weights"] == pytest.approx(dict(decision.votes), rel=1e-12)
        assert math.fsum(row.votes["weights"].values()) == pytest.approx(1.0)
        assert row.votes["raw_confidence"] == pytest.approx(decision.details["raw_confidence"])
        assert row.votes["horizon"] == HORIZON
        assert set(row.votes["models"]) == {name for name, _ in decision.votes}
        assert row.votes["models"]["garch"]["sd"] == pytest.approx(
            decision.details["models"]["garch"]["sd"], rel=1e-12
        )


async def test_record_backtest_when_horizon_passed_then_outcome_is_the_realized_return(
    db: Database, result: BacktestResult
) -> None:
    rows = await _recorded(db, result)
    mark, n_bars = result.market.mark[:, 0], result.market.n_bars
    resolved = sides = 0
    judged_on_last_bar = False

    for row in rows:
        bar = _bar(result, row)
        if bar + HORIZON >= n_bars:
            assert (row.realized_return, row.hit, row.horizon, row.resolved_at) == (None,) * 4
            continue
        realized = math.log(mark[bar + HORIZON] / mark[bar])
        side, cost = row.votes["side"], row.votes["cost"]
        assert row.horizon == HORIZON
        assert row.resolved_at == result.market.time_of(bar + HORIZON)
        assert row.realized_return == pytest.approx(realized, rel=1e-12, abs=1e-15)
        assert row.hit == (
            realized > math.log(1 + cost) if side > 0 else realized < math.log(1 - cost)
        )
        resolved, sides = resolved + 1, sides | (1 if side > 0 else 2)
        judged_on_last_bar |= bar + HORIZON == n_bars - 1

    assert 0 < resolved < len(rows)
    assert judged_on_last_bar
    assert sides == 3  # both long and short decisions were judged


async def test_record_backtest_when_hold_then_target_zero_and_action_in_votes(
    db: Database, result: BacktestResult
) -> None:
    rows = await _recorded(db, result)
    actions = [r.votes["action"] for r in rows]

    assert {"hold", "buy", "sell"} <= set(actions)
    for row, decision in zip(rows, result.decisions, strict=True):
        if math.isnan(decision.target):
            assert row.votes["action"] == "hold"
            assert row.target == 0.0
        else:
            assert row.target == decision.target
            assert row.votes["action"] == ("buy" if decision.target > 0 else "sell")
