"""The backtest loop: targets in, orders through risk and the simulated broker, fills into
the ledger.

Only bars where the strategy gives an instruction, or where an order fills, cost Python
work; everything between them (equity, drawdown) is computed with array operations. That is
how a run over thousands of bars takes a couple of milliseconds while every order still
passes the same risk engine and fill model as the paper agent's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from ffe.backtest.causality import batch_targets, stream_targets, verify_point_in_time
from ffe.backtest.result import BacktestResult
from ffe.decide.strategy import Strategy
from ffe.domain.market import FloatArray, MarketData
from ffe.domain.orders import Denied, OrderIntent
from ffe.execution.fill_model import FillModel
from ffe.execution.simulated import SimulatedBroker
from ffe.portfolio.ledger import Ledger
from ffe.risk.engine import AccountState, RiskEngine, reduces_only

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """How a backtest is run. Risk limits live in the RiskEngine passed beside it."""

    cash: float = 10_000.0
    fill: FillModel = field(default_factory=FillModel)
    lot_size: float = 1.0
    mode: Literal["batch", "stream"] = "batch"
    check_lookahead: bool = True

    def __post_init__(self) -> None:
        if not self.cash > 0:
            raise ValueError(f"cash must be positive, got {self.cash}")
        if not self.lot_size > 0:
            raise ValueError(f"lot_size must be positive, got {self.lot_size}")


def run_backtest(
    market: MarketData,
    strategy: Strategy,
    config: BacktestConfig | None = None,
    risk: RiskEngine | None = None,
) -> BacktestResult:
    """Run ``strategy`` over ``market`` and return the result (stats are computed lazily)."""
    config = config or BacktestConfig()
    risk = risk or RiskEngine.from_limits(
        max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None
    )
    if config.mode == "stream":
        targets = stream_targets(strategy, market)
    else:
        targets = batch_targets(strategy, market)
        if config.check_lookahead:
            verify_point_in_time(strategy, market, targets)
    simulation = _Simulation(market, config, risk)
    for bar in np.flatnonzero(~np.isnan(targets).all(axis=1)).tolist():
        simulation.step(bar, targets[bar])
    simulation.finish()
    return simulation.result(strategy, targets)


def bar_time(market: MarketData, bar: int) -> datetime:
    """The UTC datetime of a bar."""
    micros = int(market.times[bar].astype("datetime64[us]").astype(np.int64))
    return _EPOCH + timedelta(microseconds=micros)


class _Simulation:
    """State of one run: ledger, broker, drawdown monitor, denials."""

    def __init__(self, market: MarketData, config: BacktestConfig, risk: RiskEngine) -> None:
        self.market = market
        self.config = config
        self.risk = risk
        self.marks = np.nan_to_num(market.mark)
        self.ledger = Ledger(market.n_symbols, config.cash)
        self.broker = SimulatedBroker(market, config.fill)
        self.denials: list[tuple[int, Denied]] = []
        self.halted_at: int | None = None
        self._peak = config.cash
        self._monitored = 0  # equity of bars before this one has been checked for drawdown
        self._sequence = 0
        self._index = {symbol: i for i, symbol in enumerate(market.symbols)}

    def step(self, bar: int, row: FloatArray) -> None:
        self._advance(bar)
        self._decide(bar, row)
        if self.config.fill.delay == 0:
            self._apply_fills(bar)

    def finish(self) -> None:
        self._advance(self.market.n_bars)
        for order in self.broker.cancel_all("end of data"):
            log.debug("order cancelled at end of data %s", order.client_id)

    def result(self, strategy: Strategy, targets: FloatArray) -> BacktestResult:
        n_bars = self.market.n_bars
        positions = self.ledger.position_path(n_bars)
        equity = self.ledger.cash_path(n_bars) + np.einsum("tn,tn->t", positions, self.marks)
        return BacktestResult(
            market=self.market,
            strategy=strategy,
            config=self.config,
            targets=targets,
            equity=equity,
            positions=positions,
            ledger=self.ledger,
            orders=self.broker.orders,
            denials=self.denials,
            halted_at=self.halted_at,
        )

    # -- time moves forward -------------------------------------------------------------

    def _advance(self, bar: int) -> None:
        """Apply every fill due before ``bar`` and watch drawdown on the bars between."""
        while True:
            due = self.broker.next_fill_bar()
            until = bar if due is None or due >= bar else due
            if self._watch_drawdown(until):
                continue  # a halt queued flattening orders: look again
            if due is None or due >= bar:
                return
            self._apply_fills(due)

    def _apply_fills(self, bar: int) -> None:
        for fill in self.broker.fill_due(bar):
            self.ledger.apply_fill(fill.bar, fill.symbol, fill.quantity, fill.price, fill.commission)
            log.debug("order filled %s qty=%s px=%s", fill.client_id, fill.quantity, fill.price)

    def _watch_drawdown(self, until: int) -> bool:
        """Check equity of bars ``[monitored, until)``; on a breach halt and flatten."""
        limit = self.risk.max_drawdown
        start = self._monitored
        if limit is None or self.halted_at is not None or until <= start:
            self._monitored = max(start, until)
            return False
        equity = self.ledger.cash + self.marks[start:until] @ self.ledger.positions
        peaks = np.maximum.accumulate(np.maximum(equity, self._peak))
        breached = np.flatnonzero(equity <= peaks * (1.0 - limit))
        if breached.size == 0:
            self._peak, self._monitored = float(peaks[-1]), until
            return False
        bar = start + int(breached[0])
        self._peak, self._monitored, self.halted_at = float(peaks[breached[0]]), bar + 1, bar
        log.warning("drawdown limit %.1f%% reached at bar %d: halting", limit * 100, bar)
        self._flatten(bar)
        return True

    # -- decisions become orders ----------------------------------------------------------

    def _decide(self, bar: int, row: FloatArray) -> None:
        marks = self.marks[bar]
        equity = self.ledger.equity(marks)
        peak = max(self._peak, equity)
        time = bar_time(self.market, bar)
        intents = [
            intent
            for symbol in np.flatnonzero(~np.isnan(row)).tolist()
            if (intent := self._intent(bar, time, symbol, float(row[symbol]), equity))
        ]
        if intents:
            self._submit(bar, intents, AccountState(equity, peak, halted=self.halted_at is not None))

    def _intent(
        self, bar: int, time: datetime, symbol: int, weight: float, equity: float
    ) -> OrderIntent | None:
        price = float(self.market.close[bar, symbol])
        if math.isnan(price) or price <= 0:
            return None  # the symbol has no bar here: nothing sensible to size against
        lot = self.config.lot_size
        raw = weight * max(equity, 0.0) / (price * (1.0 + self.config.fill.cost_rate))
        target = math.copysign(math.floor(abs(raw) / lot + 1e-9) * lot, raw)
        delta = target - float(self.ledger.positions[symbol])
        if abs(delta) < lot * 1e-9:
            return None
        self._sequence += 1
        return OrderIntent(
            f"bt-{self._sequence}", time, self.market.symbols[symbol], delta, price
        )

    def _submit(self, bar: int, intents: list[OrderIntent], account: AccountState) -> None:
        positions, marks, index = self.ledger.positions, self.marks[bar], self._index
        account.gross_exposure = float(np.abs(positions) @ marks)
        for intent in intents:
            account.positions[intent.symbol] = float(positions[index[intent.symbol]])
        # Reductions first, so they free room under the limits for what follows.
        intents.sort(key=lambda i: not reduces_only(*account.position_after(i)))
        for verdict in self.risk.evaluate(intents, account):
            intent = verdict.intent
            if isinstance(verdict, Denied):
                self.denials.append((bar, verdict))
                continue
            self.broker.submit(intent.client_id, bar, index[intent.symbol], intent.quantity)

    def _flatten(self, bar: int) -> None:
        time = bar_time(self.market, bar)
        for symbol in np.flatnonzero(self.ledger.positions).tolist():
            self._sequence += 1
            quantity = -float(self.ledger.positions[symbol])
            client_id = f"bt-{self._sequence}-flatten"
            log.info("flatten %s qty=%s at %s", client_id, quantity, time.isoformat())
            self.broker.submit(client_id, bar, symbol, quantity)
