"""One step of the trading agent: the backtest's loop body for one bar, against a broker.
The loop itself (clock, the run's start and end) is ``ffe.agent.runner``; the lease and
control are ``ffe.agent.lifecycle``'s.

Each step: fills for the new bar, binary markets that closed settled (``ffe.agent.settle``,
paper broker only), the strategy's instruction, sizing and the risk engine
exactly as in the backtest, the approval policy, orders to the broker, the journal, and the
outcomes of earlier decisions. With the paper broker on replayed bars it makes the backtest's
trades (tested); with a real broker the same code sends real orders.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np

from ffe.agent import persist
from ffe.agent.approvals import ApprovalDesk
from ffe.agent.clock import utcnow
from ffe.agent.config import AgentConfig
from ffe.agent.journal import AgentJournal, PendingDecision
from ffe.agent.outcomes import OutcomeWatch
from ffe.agent.reports import BarReport, DecisionsMade, HeldPosition, Snapshot
from ffe.agent.settle import settle_expired
from ffe.agent.stepper import Stepper
from ffe.backtest.result import llm_failures, trade_of
from ffe.decide.strategy import Strategy
from ffe.domain.errors import BrokerError
from ffe.domain.market import History, MarketData, finite_marks
from ffe.domain.orders import Decision, Denied, OrderIntent, OrderStatus
from ffe.execution.broker import Broker, BrokerOrder
from ffe.execution.paper import PaperBroker
from ffe.portfolio.ledger import Ledger
from ffe.risk.engine import AccountState, RiskEngine, reductions_first
from ffe.risk.rules import RiskContext, daily_loss_tripped
from ffe.risk.sizing import order_sizes, sizing_budget
from ffe.runs.journal import decision_row

__all__ = ["AgentConfig", "StepCore"]  # AgentConfig lives in ffe.agent.config; re-exported

log = logging.getLogger(__name__)


class StepCore:
    """The state of one account's trading and the step itself, without clock or control.

    Everything between two bars that the backtest does, in the same order with the same
    numbers: ``step`` is the unit the agent loop repeats and the benchmark times."""

    def __init__(
        self,
        market: MarketData,
        strategy: Strategy,
        stepper: Stepper,
        broker: Broker,
        risk: RiskEngine,
        journal: AgentJournal,
        config: AgentConfig,
        desk: ApprovalDesk,
        prefix: str,
    ) -> None:
        self.market = market
        self.strategy = strategy
        self.stepper = stepper
        self.broker = broker
        self.risk = risk
        self.journal = journal
        self.config = config
        self.desk = desk
        self.prefix = prefix
        self.ledger = Ledger(market.n_symbols, config.cash)
        self.index = {symbol: i for i, symbol in enumerate(market.symbols)}
        self.peak = config.cash
        self.halted_at: int | None = None
        self.halt_reason: str | None = None
        self.trades_journaled = 0
        self.wins = self.losses = 0  # trades closed by fills booked here (restored: not)
        self.working: dict[str, BrokerOrder] = {}  # sent and not finished
        self.outcomes = OutcomeWatch(journal)
        self.denials: list[tuple[int, Denied]] = []
        self.last_bar = -1
        self.strategy_seconds = 0.0
        self.llm_failures = 0  # decisions the LLM voter failed to vote on, this run
        self.context = RiskContext()
        self._marked_market: MarketData | None = None
        self._marked: Any = None
        self.contracts = {contract.symbol: contract for contract in config.contracts}
        self.live_clock = False  # the risk context's "now": wall clock live, bar time in replay
        self.flattened_day: date | None = None  # the day the daily-loss switch last flattened
        self.origin: str | None = None  # a live feed's first bar (ISO): a resume fetches from it
        self.on_event: Callable[[str, str, dict[str, Any]], None] = lambda kind, text, data: None
        # Watchers of the live loop (the API's event stream); never part of the journal.
        self.on_decisions: Callable[[DecisionsMade], None] | None = None
        # The seconds from the strategy's decision to the broker's acknowledgement of each
        # order sent for it on the same bar (not flattening, not orders approved later).
        self.on_order: Callable[[float], None] | None = None

    # -- one bar --------------------------------------------------------------------------

    async def step(
        self, market: MarketData, bar: int, *, decide: bool = True, trade: bool = True
    ) -> None:
        """Bar ``bar``; with ``trade`` False (history when it came) nothing is ordered for it."""
        if market is not self.market:
            self.market = market
        await self.collect_fills(bar)
        if self.contracts:  # binary markets only: no extra await per bar otherwise
            await settle_expired(self, bar)
        self._on_bar(bar)
        if decide and trade:
            await self.decide(bar)
        elif decide and hasattr(self.stepper, "state"):
            self.stepper.step(History(self.market, bar + 1))  # its state learns from the bar
        await self.collect_fills(bar)  # orders that fill at the deciding bar's close
        await self._watch_daily_loss(bar)
        self.watch_drawdown(bar)
        if self.halted_at == bar:
            await self.flatten(bar, "drawdown")
            await self.collect_fills(bar)
        equity, _ = self.ledger.marked(self.marks(), bar)
        time_ = self.market.time_of(bar)
        self.journal.equity(time_, equity, self.ledger.cash)
        self.resolve_outcomes(bar)
        self.last_bar = bar

    def _on_bar(self, bar: int) -> None:
        bar_time = self.market.time_of(bar)
        equity, _ = self.ledger.marked(self.marks(), bar)
        self.context.on_bar(bar, bar_time, utcnow() if self.live_clock else bar_time, equity)

    async def _watch_daily_loss(self, bar: int) -> None:
        """The daily loss kill switch: once tripped, flatten (once a day) and say so."""
        context = self.context
        context.update_equity(self.ledger.marked(self.marks(), bar)[0])
        if not daily_loss_tripped(self.risk.checks, context) or self.flattened_day == context.day:
            return
        self.flattened_day = context.day
        reason = context.daily_halt_reason or "daily loss limit hit"
        log.warning("kill switch at bar %d: %s", bar, reason)
        self.on_event("risk_halt", reason, {"bar": bar})
        await self.flatten(bar, "loss")
        await self.collect_fills(bar)

    async def collect_fills(self, bar: int) -> None:
        """Book what the broker filled since the last look."""
        broker = self.broker
        if isinstance(broker, PaperBroker):
            updates = broker.on_bar(self.market, bar)
        else:
            updates = await self._poll_working()
        for order in updates:
            self.book(bar, order)

    async def _poll_working(self) -> list[BrokerOrder]:
        updates = []
        for client_id, known in list(self.working.items()):
            now = await self.broker.order(client_id, known.symbol)
            if now is not None and (now.filled_quantity != known.filled_quantity or now.done):
                updates.append(now)
        return updates

    def book(self, bar: int, order: BrokerOrder) -> None:
        """Book what ``order`` filled since it was last seen, and stop watching it once done."""
        known = self.working.pop(order.client_id, None)
        before_qty = 0.0 if known is None else known.filled_quantity
        before_fee = 0.0 if known is None else known.commission
        quantity = order.filled_quantity - before_qty
        if abs(quantity) > 0:
            if known is None or before_qty == 0:
                price = order.average_price
            else:  # the price of the new part, from the two running averages
                paid = order.average_price * order.filled_quantity
                price = (paid - known.average_price * before_qty) / quantity
            fee = order.commission - before_fee
            self.apply_fill(bar, order, quantity, price, fee)
        if not order.done:
            self.working[order.client_id] = order
        self.journal.order_update(order)
        if order.status is not OrderStatus.FILLED:
            log.info("order %s %s: %s", order.client_id, order.status.value, order.reason)

    def apply_fill(
        self, bar: int, order: BrokerOrder, qty: float, price: float, fee: float
    ) -> None:
        symbol = self.index[order.symbol]
        trades_before = len(self.ledger.trades)
        self.ledger.apply_fill(bar, symbol, qty, price, fee)
        time_ = self.market.time_of(bar)
        self.journal.fill(order.client_id, time_, order.symbol, qty, price, fee)
        log.info("order filled %s qty=%s px=%s", order.client_id, qty, price)
        self.on_event(
            "fill",
            f"{order.symbol} {qty:+g} @ {price:.6g}",
            {
                "client_id": order.client_id,
                "symbol": order.symbol,
                "quantity": qty,
                "price": price,
                "commission": fee,
                "time": time_.isoformat(),
            },
        )
        for closed in self.ledger.trades[trades_before:]:
            self.journal.trade(trade_of(closed, self.market))
            self.trades_journaled += 1
            if closed.pnl > 0:
                self.wins += 1
            else:
                self.losses += 1
            self.context.on_trade_closed(order.symbol, closed.pnl)

    # -- deciding -------------------------------------------------------------------------

    async def decide(self, bar: int) -> None:
        started = time.perf_counter()
        row, decisions = self.stepper.step(History(self.market, bar + 1))
        decided = time.perf_counter()
        self.strategy_seconds += decided - started
        self.llm_failures += llm_failures(decisions)
        pending = {d.symbol: self._journal_decision(d, bar) for d in decisions}
        if self.on_decisions is not None and decisions:
            self.on_decisions(self._made(bar, decisions))
        for made in decisions:
            self.context.set_confidence(made.symbol, made.confidence)
        intents, account = self._intents(bar, row)
        if not intents:
            return
        reductions_first(intents, account)
        for verdict in self.risk.evaluate(intents, account):
            decision = pending.get(verdict.intent.symbol)
            self.journal_verdict(decision, verdict)
            if isinstance(verdict, Denied):
                self.denials.append((bar, verdict))
                continue
            if await self.desk.needs_approval(verdict.intent, self):
                self.desk.queue(verdict.intent, decision, self)
                continue
            sent = await self.send(verdict.intent, decision)
            if sent is not None and self.on_order is not None:
                self.on_order(time.perf_counter() - decided)

    def _made(self, bar: int, decisions: list[Decision]) -> DecisionsMade:
        account, run_id = self.config.account, self.journal.run_id
        time_ = self.market.time_of(bar)
        return DecisionsMade(account, run_id, bar, time_, tuple(decisions), self.strategy_seconds)

    def _intents(self, bar: int, row: Any) -> tuple[list[OrderIntent], AccountState]:
        ledger = self.ledger
        equity, gross = ledger.marked(self.marks(), bar)
        budget = sizing_budget(equity, self.config.fill.cost_rate)
        time_, names = self.market.time_of(bar), self.market.symbols
        symbols = np.flatnonzero(~np.isnan(row))
        weights = row[symbols].tolist()
        sized = order_sizes(
            bar,
            symbols.tolist(),
            weights,
            self.market.close,
            ledger.held,
            budget,
            self.config.lot_size,
        )
        intents, positions = [], {}
        for symbol, delta, price, before in sized:
            name = names[symbol]
            intents.append(OrderIntent(f"{self.prefix}-{bar}-{symbol}", time_, name, delta, price))
            positions[name] = before
        peak, halted = max(self.peak, equity), self.halted_at is not None
        self.context.update_equity(equity)
        return intents, AccountState(equity, peak, positions, gross, halted, self.context)

    def _journal_decision(self, decision: Decision, bar: int) -> PendingDecision:
        pending = self.journal.decision(decision_row(decision))
        self.outcomes.track(pending, decision, bar, self.index[decision.symbol])
        return pending

    def journal_verdict(self, decision: PendingDecision | None, verdict: Any) -> None:
        intent = verdict.intent
        denied = isinstance(verdict, Denied)
        self.journal.verdict(
            decision,
            {
                "time": intent.time,
                "symbol": intent.symbol,
                "approved": not denied,
                "requested_quantity": intent.quantity,
                "approved_quantity": 0.0 if denied else intent.quantity,
                "check_name": verdict.check if denied else None,
                "reason": verdict.reason if denied else None,
            },
        )
        if denied:
            log.info("order denied %s by %s: %s", intent.client_id, verdict.check, verdict.reason)

    # -- sending --------------------------------------------------------------------------

    async def send(
        self, intent: OrderIntent, decision: PendingDecision | None
    ) -> BrokerOrder | None:
        """Journal the order, then send it (journal first for venues with their own state)."""
        self.journal.order(decision, _order_row(intent))
        if self.broker.durable:
            await self.flush()
        try:
            order = await self.broker.submit(
                intent.client_id, intent.symbol, intent.quantity, intent.reference_price
            )
        except BrokerError as exc:
            log.error("order %s not sent: %s", intent.client_id, exc)
            self.on_event("error", f"order {intent.client_id} not sent: {exc}", {})
            rejected = BrokerOrder(
                intent.client_id,
                intent.symbol,
                intent.quantity,
                OrderStatus.REJECTED,
                reason=str(exc),
            )
            self.journal.order_update(rejected)
            return None
        log.info("order sent %s %s qty=%s", intent.client_id, intent.symbol, intent.quantity)
        self.context.on_order_sent(intent.symbol)
        self.working[order.client_id] = BrokerOrder(
            order.client_id, order.symbol, order.quantity, broker_id=order.broker_id
        )
        if order.done or order.filled_quantity:
            self.book(self.last_bar if self.last_bar >= 0 else 0, order)
        return order

    async def send_approved(self, intent: OrderIntent, decision: PendingDecision | None) -> None:
        """An order a person approved: the risk engine looks again at today's account."""
        bar = max(self.last_bar, 0)
        equity, gross = self.ledger.marked(self.marks(), bar)
        before = self.ledger.held.get(self.index[intent.symbol], 0.0)
        account = AccountState(
            equity,
            max(self.peak, equity),
            {intent.symbol: before},
            gross,
            self.halted_at is not None,
        )
        verdict = self.risk.evaluate([intent], account)[0]
        self.journal_verdict(decision, verdict)
        if isinstance(verdict, Denied):
            self.denials.append((bar, verdict))
            return
        await self.send(intent, decision)
        self.desk.traded.add(intent.symbol)

    async def flatten(self, bar: int, why: str) -> None:
        """Close every position with market orders (they pass risk: they only reduce)."""
        time_, close = self.market.time_of(bar), self.market.close
        for symbol, quantity in self.ledger.closing_orders():
            name = self.market.symbols[symbol]
            client_id = f"{self.prefix}-{bar}-{symbol}-{why[:1]}"
            intent = OrderIntent(client_id, time_, name, quantity, close.item(bar, symbol))
            log.info("flatten %s qty=%s (%s)", client_id, quantity, why)
            await self.send(intent, None)

    async def cancel_working(self, reason: str) -> None:
        for client_id, order in list(self.working.items()):
            cancelled = await self.broker.cancel(client_id, order.symbol)
            if cancelled is not None:
                self.book(max(self.last_bar, 0), cancelled)
            log.info("order cancelled %s: %s", client_id, reason)

    # -- risk over time -------------------------------------------------------------------

    def watch_drawdown(self, bar: int) -> None:
        limit = self.risk.max_drawdown
        if limit is None or self.halted_at is not None:
            return
        equity, _ = self.ledger.marked(self.marks(), bar)
        self.peak = max(self.peak, equity)
        if equity <= self.peak * (1.0 - limit):
            self.halted_at = bar
            self.halt_reason = f"drawdown reached {1 - equity / self.peak:.1%}, limit {limit:.1%}"
            log.warning("drawdown limit %.1f%% reached at bar %d: halting", limit * 100, bar)
            self.on_event("risk_halt", self.halt_reason, {"bar": bar})

    def resolve_outcomes(self, bar: int) -> None:
        if self.outcomes.waiting:
            self.outcomes.resolve(bar, self.marks(), self.market)

    def marks(self) -> Any:
        """Marks without NaN (they would poison the sums), made once per market, not per
        call: a leading NaN means a copy of the whole matrix."""
        market = self.market
        if self._marked_market is not market:
            self._marked = finite_marks(market.mark)
            self._marked_market = market
        return self._marked

    def bar_report(self, bar: int) -> BarReport:
        """The book marked at ``bar``, for the agent's watchers."""
        ledger = self.ledger
        equity, exposure = ledger.marked(self.marks(), bar)
        held = sum(1 for quantity in ledger.held.values() if quantity != 0)
        return BarReport(
            self.config.account,
            self.journal.run_id,
            bar,
            self.market.time_of(bar),
            equity,
            ledger.cash,
            exposure,
            held,
            ledger.realized_pnl,
            self.wins,
            self.losses,
            self.context.daily_halt_reason is not None,
            self.halted_at is not None,
        )

    def snapshot(self) -> Snapshot | None:
        """The book after the last finished bar; None before the first one."""
        bar = self.last_bar
        if bar < 0:
            return None
        marks, ledger = self.marks(), self.ledger
        equity, _ = ledger.marked(marks, bar)
        positions = tuple(
            HeldPosition(
                self.market.symbols[i], quantity, _average(ledger.lots[i]), marks.item(bar, i)
            )
            for i, quantity in sorted(ledger.held.items())
            if quantity != 0
        )
        return Snapshot(
            self.config.account,
            self.journal.run_id,
            bar,
            self.market.time_of(bar),
            ledger.cash,
            equity,
            self.config.cash,
            positions,
        )

    # -- journal --------------------------------------------------------------------------

    def checkpoint(self) -> persist.Checkpoint:
        """Where the run stands, for the journal (see ``persist.Checkpoint``)."""
        return persist.Checkpoint(
            bar=self.last_bar,
            peak=self.peak,
            halted_at=self.halted_at,
            halt_reason=self.halt_reason,
            trades=self.trades_journaled,
            risk=self.context.to_dict(),
            flattened_day=self.flattened_day,
            strategy=self.stepper.state() if hasattr(self.stepper, "state") else None,
            origin=self.origin,
            llm_failures=self.llm_failures,
        )

    async def flush(self, lease: timedelta | None = None) -> None:
        last = self.market.time_of(self.last_bar) if self.last_bar >= 0 else None
        await self.journal.flush(
            self.checkpoint().as_dict(), last, utcnow() + (lease or persist.LEASE_TTL)
        )


def _order_row(intent: OrderIntent) -> dict[str, Any]:
    return {"client_order_id": intent.client_id, "time": intent.time, "symbol": intent.symbol,
            "quantity": intent.quantity, "order_type": "market", "status": "pending",
            "filled_quantity": 0.0}  # fmt: skip


def _average(lots: Any) -> float | None:
    """The average price of open lots (None when they net to nothing)."""
    held = sum(lot.quantity for lot in lots)
    if not lots or held == 0:
        return None
    return float(sum(lot.quantity * lot.price for lot in lots) / held)
