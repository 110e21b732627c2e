"""Restart safety: rebuild the agent's state from the journal, then compare it with the broker
before acting, and record what was found."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sqlalchemy import func, select

from ffe.agent.approvals import Waiting
from ffe.agent.persist import Checkpoint, approvals_for_run
from ffe.agent.step import StepCore
from ffe.domain.orders import OrderIntent, OrderStatus
from ffe.execution.broker import BrokerOrder
from ffe.execution.paper import PaperBroker
from ffe.risk.rules import RiskContext
from ffe.store.database import Database
from ffe.store.models import Fill, Order, TradeRow
from ffe.store.repositories import unit_of_work

log = logging.getLogger(__name__)
_TOLERANCE = 1e-6


async def restore(core: StepCore, db: Database, run_id: str, checkpoint: Checkpoint | None) -> int:
    """Rebuild ledger, working orders and risk state of ``run_id``; the bar to go on from."""
    if checkpoint is None:
        return 0
    times = core.market.times
    async with db.session() as session:
        fills = (
            await session.scalars(select(Fill).where(Fill.run_id == run_id).order_by(Fill.id))
        ).all()
        query = select(Order).where(Order.run_id == run_id, Order.status == "pending")
        working = (await session.scalars(query.order_by(Order.id))).all()
        count = select(func.count()).select_from(TradeRow).where(TradeRow.run_id == run_id)
        core.trades_journaled = int((await session.execute(count)).scalar_one())
    for fill in fills:
        bar = _bar_of(times, fill.time)
        core.ledger.apply_fill(
            bar, core.index[fill.symbol], fill.quantity, fill.price, fill.commission
        )
        core.desk.traded.add(fill.symbol)
    core.last_bar = checkpoint.bar
    core.peak = core.config.cash if checkpoint.peak is None else checkpoint.peak
    core.halted_at = checkpoint.halted_at
    core.halt_reason = checkpoint.halt_reason
    core.llm_failures = checkpoint.llm_failures
    if checkpoint.risk:
        core.context = RiskContext.from_dict(checkpoint.risk)
    if checkpoint.flattened_day is not None:
        core.flattened_day = checkpoint.flattened_day
    if checkpoint.strategy and hasattr(core.stepper, "restore"):
        core.stepper.restore(checkpoint.strategy)  # a resumed ensemble decides as undisturbed
    for order in working:
        core.working[order.client_order_id] = BrokerOrder(
            order.client_order_id,
            order.symbol,
            order.quantity,
            filled_quantity=order.filled_quantity,
            broker_id=order.broker_order_id,
        )
    if isinstance(core.broker, PaperBroker):
        positions = {core.market.symbols[s]: q for s, q in core.ledger.held.items()}
        core.broker.restore(
            core.ledger.cash,
            positions,
            [(o.client_order_id, _bar_of(times, o.time), o.symbol, o.quantity) for o in working],
        )
    for approval in await approvals_for_run(db, run_id, ("pending", "approved")):
        intent = OrderIntent(
            approval.client_order_id,
            approval.time,
            approval.symbol,
            approval.quantity,
            approval.reference_price,
        )
        core.desk.waiting[approval.client_order_id] = Waiting(intent, None)
    log.info(
        "resumed run %s after bar %d: %d fills, %d working orders",
        run_id[:8],
        core.last_bar,
        len(fills),
        len(working),
    )
    return core.last_bar + 1


def _bar_of(times: Any, when: Any) -> int:
    stamp = np.datetime64(when.replace(tzinfo=None), "ns")
    return int(np.searchsorted(times, stamp, side="left"))


async def reconcile(core: StepCore, db: Database, account: str) -> dict[str, Any]:
    """Compare journal and broker (open orders, positions, cash); settle orders the journal
    thinks are working; record the findings in the audit log and return them."""
    broker = core.broker
    findings: dict[str, Any] = {"broker": broker.name, "settled": [], "missing": [], "unknown": []}
    for client_id, known in list(core.working.items()):
        now = await broker.order(client_id, known.symbol)
        if now is None:
            gone = BrokerOrder(
                client_id,
                known.symbol,
                known.quantity,
                OrderStatus.CANCELLED,
                known.filled_quantity,
                reason="not at the broker after restart",
            )
            core.working.pop(client_id)
            core.journal.order_update(gone)
            findings["missing"].append(client_id)
        elif now.done or now.filled_quantity != known.filled_quantity:
            core.book(max(core.last_bar, 0), now)
            findings["settled"].append(client_id)
    open_ids = {o.client_id for o in await broker.open_orders()}
    findings["unknown"] = sorted(open_ids - core.working.keys())
    snapshot = await broker.account()
    ledger = {core.market.symbols[s]: q for s, q in core.ledger.held.items()}
    differences = {
        symbol: {"journal": ledger.get(symbol, 0.0), "broker": snapshot.positions.get(symbol, 0.0)}
        for symbol in set(ledger) | set(snapshot.positions)
        if abs(ledger.get(symbol, 0.0) - snapshot.positions.get(symbol, 0.0)) > _TOLERANCE
    }
    findings.update(
        positions=differences,
        cash={"journal": core.ledger.cash, "broker": snapshot.cash},
        working=sorted(core.working),
        consistent=not differences and not findings["unknown"] and not findings["missing"],
    )
    if not findings["consistent"]:
        log.warning("reconciliation found differences on %s: %s", account, findings)
    async with unit_of_work(db) as uow:
        await uow.audit.record("agent", "agent.reconcile", account, findings)
    return findings
