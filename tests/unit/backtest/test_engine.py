from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import SyntheticMarket
from ffe.decide import make_strategy
from ffe.domain import History, OrderStatus, StrategyError
from ffe.execution import FillModel
from ffe.risk import RiskEngine

NAN = np.nan


@dataclass
class Scripted:
    """A fake strategy that replays a fixed table of instructions (rows = bars)."""

    rows: np.ndarray
    name: ClassVar[str] = "scripted"
    calls: list[int] = field(default_factory=list)

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        self.calls.append(len(history))
        table = np.asarray(self.rows, dtype=float)
        table = table[:, None] if table.ndim == 1 else table
        return table[: len(history)].copy()


def _config(**given: object) -> BacktestConfig:
    """Whole units and no costs unless given: the figures below are worked by hand."""
    return BacktestConfig(**{"lot_size": 1.0, "fill": FillModel(), **given})  # type: ignore[arg-type]


def _limits(**overrides: float | None) -> RiskEngine:
    values: dict[str, float | None] = {
        "max_position_pct": 1.0,
        "max_gross_leverage": 1.0,
        "max_drawdown": None,
    }
    values.update(overrides)
    return RiskEngine.from_limits(**values)  # type: ignore[arg-type]


def test_run_when_long_instruction_then_fills_at_next_open_sized_from_close(make_market) -> None:
    market = make_market([100.0, 110.0, 121.0, 130.0], open_=[100.0, 105.0, 120.0, 125.0])
    strategy = Scripted(np.array([1.0, NAN, NAN, NAN]))

    result = run_backtest(market, strategy, _config(cash=1_000.0))

    # 1,000 of equity at a close of 100 buys 10 units, filled at bar 1's open of 105.
    assert result.positions[:, 0].tolist() == [0.0, 10.0, 10.0, 10.0]
    assert result.ledger.cash == pytest.approx(1_000.0 - 10 * 105.0)
    assert result.equity.tolist() == pytest.approx([1_000.0, 1_050.0, 1_160.0, 1_250.0])


def test_run_when_fill_at_close_then_fills_on_the_deciding_bar(make_market) -> None:
    market = make_market([100.0, 110.0, 121.0], open_=[100.0, 105.0, 120.0])
    config = _config(cash=1_000.0, fill=FillModel(at="close"))

    result = run_backtest(market, Scripted(np.array([NAN, 1.0, NAN])), config)

    assert result.positions[:, 0].tolist() == [0.0, 9.0, 9.0]  # floor(1000 / 110)
    assert result.ledger.cash == pytest.approx(1_000.0 - 9 * 110.0)


def test_run_when_commission_and_slippage_then_costs_are_charged(make_market) -> None:
    market = make_market([100.0, 100.0, 100.0, 100.0], open_=[100.0] * 4)
    fill = FillModel(commission=0.01, fixed_commission=1.0, slippage_bps=50)
    rows = np.array([1.0, NAN, 0.0, NAN])

    result = run_backtest(market, Scripted(rows), _config(cash=10_000.0, fill=fill))

    bought = result.ledger.trades[0]
    quantity = np.floor(10_000 / (100 * (1 + 0.01 + 0.005)))
    assert bought.quantity == quantity
    assert bought.entry_price == pytest.approx(100.5)  # slippage against the buyer
    assert bought.exit_price == pytest.approx(99.5)  # and against the seller
    fees = quantity * 100.5 * 0.01 + 1 + quantity * 99.5 * 0.01 + 1
    assert result.ledger.commissions == pytest.approx(fees)
    assert result.equity[-1] == pytest.approx(10_000 - quantity * 1.0 - fees)


def test_run_when_short_and_price_falls_then_profit(make_market) -> None:
    market = make_market([100.0, 100.0, 80.0, 80.0], open_=[100.0, 100.0, 80.0, 80.0])

    result = run_backtest(market, Scripted(np.array([-1.0, NAN, 0.0, NAN])), _config())

    trade = result.trades[0]
    assert trade.direction == "short"
    assert trade.quantity == -100.0
    assert trade.pnl == pytest.approx(2_000.0)
    assert result.equity[-1] == pytest.approx(12_000.0)


def test_run_when_reversal_then_one_trade_closes_and_the_next_opens_at_the_same_fill(
    make_market,
) -> None:
    market = make_market([10.0, 10.0, 12.0, 12.0, 12.0], open_=[10.0, 10.0, 11.0, 12.0, 12.0])

    result = run_backtest(market, Scripted(np.array([1.0, -1.0, NAN, NAN, NAN])), _config())

    assert len(result.trades) == 1
    assert result.trades[0].exit_time == result.trades[0].entry_time.replace(day=3)
    assert result.open_positions() == {"S0": pytest.approx(-1_000.0)}


def test_run_when_target_exceeds_max_position_then_denied_and_recorded(make_market) -> None:
    market = make_market([100.0, 100.0, 100.0])

    result = run_backtest(
        market, Scripted(np.array([1.0, NAN, NAN])), risk=_limits(max_position_pct=0.5)
    )

    assert result.ledger.trades == []
    assert result.open_positions() == {}
    [(bar, denial)] = result.denials
    assert (bar, denial.check) == (0, "max_position_pct")
    assert "limit 50.0%" in denial.reason
    assert json.loads(json.dumps(result.to_dict()))["denials"][0]["check"] == "max_position_pct"


def test_run_when_drawdown_limit_hit_then_flattens_and_denies_new_exposure(make_market) -> None:
    close = [100.0, 100.0, 95.0, 85.0, 80.0, 90.0, 100.0]
    market = make_market(close)
    rows = np.array([1.0, NAN, NAN, NAN, NAN, 1.0, NAN])

    result = run_backtest(market, Scripted(rows), _config(), _limits(max_drawdown=0.1))

    # Equity is 10% below its peak at bar 3's close; the flattening order fills at bar 4.
    assert result.halted_at == 3
    assert result.positions[:, 0].tolist() == [0.0, 100.0, 100.0, 100.0, 0.0, 0.0, 0.0]
    assert [d.check for _, d in result.denials] == ["max_drawdown"]


def test_run_when_strategy_reads_the_future_then_refused() -> None:
    @dataclass
    class Peeking:
        name: ClassVar[str] = "peeking"

        def warmup(self) -> int:
            return 1

        def targets(self, history: History) -> np.ndarray:
            close = history.close
            tomorrow = np.vstack([close[1:], np.full((1, close.shape[1]), np.nan)])
            return np.where(tomorrow > close, 1.0, -1.0)

    market = SyntheticMarket(1, 300, seed=5).to_market()

    with pytest.raises(StrategyError, match="looks ahead"):
        run_backtest(market, Peeking())


def test_run_when_targets_have_wrong_shape_then_strategy_error(make_market) -> None:
    with pytest.raises(StrategyError, match=r"shape \(2, 2\), expected \(3, 1\)"):
        run_backtest(make_market([1.0, 2.0, 3.0]), Scripted(np.ones((3, 2))[:2]))


def test_run_when_next_bar_missing_then_order_rejected_not_filled(make_market) -> None:
    close = np.array([[10.0, 20.0], [10.0, NAN], [10.0, 20.0]])
    rows = np.array([[NAN, 0.5], [NAN, NAN], [NAN, NAN]])

    result = run_backtest(make_market(close, open_=close), Scripted(rows))

    [order] = result.orders
    assert order.status is OrderStatus.REJECTED
    assert "no bar" in order.reason
    assert result.open_positions() == {}


def test_run_when_instruction_on_last_bar_then_cancelled(make_market) -> None:
    result = run_backtest(make_market([10.0, 10.0]), Scripted(np.array([NAN, 1.0])))

    assert [o.status for o in result.orders] == [OrderStatus.CANCELLED]
    assert result.equity.tolist() == [10_000.0, 10_000.0]


def test_run_when_streamed_then_same_trades_and_equity_as_batch() -> None:
    market = SyntheticMarket(1, 400, seed=2).to_market()
    strategy = make_strategy("sma_cross", {"fast": 5, "slow": 20})
    fill = FillModel(commission=0.001)

    batch = run_backtest(market, strategy, _config(fill=fill), _limits())
    stream = run_backtest(market, strategy, _config(fill=fill, mode="stream"), _limits())

    assert len(batch.trades) > 5
    assert batch.trades == stream.trades
    np.testing.assert_array_equal(batch.equity, stream.equity)


def test_run_when_multi_asset_momentum_then_holds_top_fraction_without_denials() -> None:
    market = SyntheticMarket(30, 300, seed=4).to_market()
    strategy = make_strategy("momentum", {"lookback": 40, "top": 0.2, "rebalance": 20})

    result = run_backtest(market, strategy, _config(cash=1_000_000.0))

    assert result.stats.n_trades > 10
    assert result.denials == []  # equal weights summing to 1 fit under 1x gross leverage
    held = (result.positions != 0).sum(axis=1)
    assert held.max() == 6  # 20% of 30 symbols


def test_result_to_dict_when_serialized_then_trades_have_iso_times(make_market) -> None:
    market = make_market([10.0, 11.0, 12.0, 11.0], open_=[10.0, 10.5, 11.5, 11.5])

    result = run_backtest(market, Scripted(np.array([1.0, NAN, 0.0, NAN])))
    data = json.loads(json.dumps(result.to_dict()))

    assert data["trades"][0]["entry_time"] == "2020-01-02T00:00:00+00:00"
    assert data["trades"][0]["direction"] == "long"
    assert data["stats"]["n_trades"] == 1
