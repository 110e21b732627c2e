"""The backtest loop: targets in, orders through risk and the simulated broker, fills into
the ledger.

Only bars where the strategy gives an instruction, or where an order fills, cost Python
work; everything between them (equity, drawdown) is computed with array operations. That is
how a run over thousands of bars takes a couple of milliseconds while every order still
passes the same risk engine and fill model as the paper agent's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ffe.backtest.causality import batch_explained, stream_targets, verify_point_in_time
from ffe.backtest.result import BacktestResult
from ffe.decide.strategy import Strategy
from ffe.domain.defaults import DEFAULTS
from ffe.domain.errors import ConfigError
from ffe.domain.market import FloatArray, MarketData, finite_marks, utc_datetime
from ffe.domain.orders import Decision, Denied, OrderIntent
from ffe.execution.fill_model import DEFAULT_FILL, FillModel
from ffe.execution.simulated import SimulatedBroker
from ffe.portfolio.ledger import Ledger
from ffe.risk.engine import AccountState, RiskEngine, reductions_first
from ffe.risk.sizing import order_sizes, sizing_budget

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """How a backtest is run. Risk limits live in the RiskEngine passed beside it."""

    cash: float = DEFAULTS.cash
    fill: FillModel = field(default_factory=lambda: DEFAULT_FILL)
    lot_size: float = DEFAULTS.lot_size
    mode: Literal["batch", "stream"] = "batch"
    check_lookahead: bool = True

    def __post_init__(self) -> None:
        if not self.cash > 0:
            raise ConfigError(f"cash must be positive, got {self.cash}")
        if not self.lot_size > 0:
            raise ConfigError(f"lot_size must be positive, got {self.lot_size}")

    def __reduce__(self) -> tuple[type[BacktestConfig], tuple[object, ...]]:
        # Pickled through __init__: compiled with mypyc (the optional fast build), a frozen
        # dataclass cannot be restored field by field, and a sweep sends it to its workers.
        fields = (self.cash, self.fill, self.lot_size, self.mode, self.check_lookahead)
        return type(self), fields


def run_backtest(
    market: MarketData,
    strategy: Strategy,
    config: BacktestConfig | None = None,
    risk: RiskEngine | None = None,
) -> BacktestResult:
    """Run ``strategy`` over ``market`` and return the result (stats are computed lazily)."""
    config = config or BacktestConfig()
    risk = risk or RiskEngine.from_limits(
        max_position_pct=DEFAULTS.max_position_pct,
        max_gross_leverage=DEFAULTS.max_gross_leverage,
        max_drawdown=DEFAULTS.max_drawdown,
    )
    decisions: tuple[Decision, ...] = ()
    if config.mode == "stream":
        targets = stream_targets(strategy, market)
    else:
        explained = batch_explained(strategy, market)
        targets, decisions = explained.targets, explained.decisions
        if config.check_lookahead:
            verify_point_in_time(strategy, market, targets)
    simulation = _Simulation(market, config, risk)
    simulation.run(targets)
    result = simulation.result(strategy, targets)
    result.decisions = decisions
    return result


def marked_equity(positions: FloatArray, cash: FloatArray, marks: FloatArray) -> FloatArray:
    """Equity per bar: ``cash`` plus ``positions`` (bars x symbols) marked at ``marks`` (no
    NaN). One computation for the engine and the sweep's batch kernel, so both agree to the
    last bit."""
    equity: FloatArray = cash + np.einsum("tn,tn->t", positions, marks)
    return equity


def _instructions(targets: FloatArray) -> tuple[list[int], list[int], list[float]]:
    """Bar, symbol and weight of every instruction, in time order (then by symbol)."""
    # Flat indices and divmod: cheaper than np.nonzero on the 2-D array, same row-major order.
    flat = targets.ravel()
    index = np.flatnonzero(~np.isnan(flat))
    bars, symbols = np.divmod(index, targets.shape[1])
    return bars.tolist(), symbols.tolist(), flat[index].tolist()


class _Simulation:
    """State of one run: ledger, broker, drawdown monitor, denials."""

    def __init__(self, market: MarketData, config: BacktestConfig, risk: RiskEngine) -> None:
        self.market = market
        self.config = config
        self.risk = risk
        self.marks = finite_marks(market.mark)
        self.ledger = Ledger(market.n_symbols, config.cash)
        self.broker = SimulatedBroker(market, config.fill)
        self.denials: list[tuple[int, Denied]] = []
        self.halted_at: int | None = None
        self._peak = config.cash
        self._monitored = 0  # equity of bars before this one has been checked for drawdown
        self._sequence = 0
        self._index = {symbol: i for i, symbol in enumerate(market.symbols)}
        self._nanos = market.times.view(np.int64)  # a view: no per-run conversion of all bars
        self._watching = risk.max_drawdown is not None
        self._close = market.close
        self._lot = config.lot_size
        self._cost_rate = config.fill.cost_rate
        self._delay = config.fill.delay
        self._fill_at_decision = self._delay == 0
        self._debug = log.isEnabledFor(logging.DEBUG)

    def run(self, targets: FloatArray) -> None:
        """Step through every bar with an instruction, in time order, then finish."""
        bars, symbols, weights = _instructions(targets)
        start, count = 0, len(bars)
        while start < count:
            bar, stop = bars[start], start + 1
            while stop < count and bars[stop] == bar:
                stop += 1
            self.step(bar, symbols[start:stop], weights[start:stop])
            start = stop
        self.finish()

    def step(self, bar: int, symbols: list[int], weights: list[float]) -> None:
        if self._watching:
            self._advance(bar)
        else:  # what _advance comes down to without a drawdown limit, one call less per bar
            self._fill(bar)
        self._decide(bar, symbols, weights)
        if self._fill_at_decision:
            self._fill(bar)

    def finish(self) -> None:
        self._advance(self.market.n_bars - 1)
        if self._watching:
            self._watch_drawdown(self.market.n_bars)
            self._advance(self.market.n_bars - 1)
        for order in self.broker.cancel_all("end of data"):
            log.debug("order cancelled at end of data %s", order.client_id)

    def result(self, strategy: Strategy, targets: FloatArray) -> BacktestResult:
        n_bars = self.market.n_bars
        positions = self.ledger.position_path(n_bars)
        equity = marked_equity(positions, self.ledger.cash_path(n_bars), self.marks)
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
        """Apply every fill due at or before ``bar`` (fills happen at the open, before the
        decision at the close) and watch drawdown on the bars in between."""
        if not self._watching:
            # Each order fills at its own due bar, so one call covers all bars up to ``bar``.
            self._fill(bar)
            return
        while True:
            due = self.broker.next_fill_bar()
            if self._watch_drawdown(bar if due is None or due > bar else due):
                continue  # a halt queued orders that flatten the book: look again
            if due is None or due > bar:
                return
            self._fill(due)

    def _fill(self, bar: int) -> None:
        """Fill the orders due at or before ``bar`` and book them in the ledger."""
        # Called straight (not through a callback) with plain values: once per order.
        ledger, delay = self.ledger, self._delay
        for order in self.broker.fill_orders_due(bar):
            quantity, price = order.quantity, order.fill_price
            ledger.apply_fill(order.bar + delay, order.symbol, quantity, price, order.commission)
            if self._debug:
                log.debug("order filled %s qty=%s px=%s", order.client_id, quantity, price)

    def _watch_drawdown(self, until: int) -> bool:
        """Check equity of bars ``[monitored, until)``; on a breach halt and flatten."""
        limit = self.risk.max_drawdown
        start = self._monitored
        if limit is None or self.halted_at is not None or until <= start:
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

    def _decide(self, bar: int, symbols: list[int], weights: list[float]) -> None:
        ledger = self.ledger
        equity, gross = ledger.marked(self.marks, bar)
        budget = sizing_budget(equity, self._cost_rate)
        sized = order_sizes(bar, symbols, weights, self._close, ledger.held, budget, self._lot)
        if not sized:
            return
        time = utc_datetime(self._nanos.item(bar))
        names = self.market.symbols
        intents = []
        positions: dict[str, float] = {}  # what the risk checks see of the current book
        for symbol, delta, price, before in sized:
            self._sequence += 1
            name = names[symbol]
            intents.append(OrderIntent(f"bt-{self._sequence}", time, name, delta, price))
            positions[name] = before
        if intents:
            peak, halted = max(self._peak, equity), self.halted_at is not None
            self._submit(bar, intents, AccountState(equity, peak, positions, gross, halted))

    def _submit(self, bar: int, intents: list[OrderIntent], account: AccountState) -> None:
        reductions_first(intents, account)
        # broker.submit, not a bound method kept in a local: compiled, that is a direct call.
        index, broker = self._index, self.broker
        for verdict in self.risk.evaluate(intents, account):
            if isinstance(verdict, Denied):
                self.denials.append((bar, verdict))
                continue
            intent = verdict.intent
            broker.submit(intent.client_id, bar, index[intent.symbol], intent.quantity)

    def _flatten(self, bar: int) -> None:
        time = self.market.time_of(bar)
        for symbol, quantity in self.ledger.closing_orders():
            self._sequence += 1
            client_id = f"bt-{self._sequence}-flatten"
            log.info("flatten %s qty=%s at %s", client_id, quantity, time.isoformat())
            self.broker.submit(client_id, bar, symbol, quantity)
