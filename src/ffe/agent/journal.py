"""The agent's journal: what each step decided, sent, filled and earned, written in batches.

Rows are buffered in memory and written in one transaction per ``flush``, together with the
checkpoint (the last bar the agent finished) and the lease renewal. A crash loses at most the
steps since the last flush, and the checkpoint says where to pick up: the replayed steps make
the same rows again. Before an order goes to a broker that keeps its own state (a real venue)
the agent flushes first, so the journal always knows an order before the venue does.

Decisions, orders and fills refer to each other by database ids that only exist once written;
buffered rows refer to ``PendingDecision`` objects instead, and ids are filled in at the flush.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ffe.domain.errors import FfeError
from ffe.domain.orders import Trade
from ffe.execution.broker import BrokerOrder
from ffe.store.database import Database
from ffe.store.models import (
    AgentState,
    Approval,
    DecisionOutcome,
    EquityPoint,
    Fill,
    Order,
    RiskVerdict,
    TradeRow,
)
from ffe.store.models import Decision as DecisionRow
from ffe.store.types import utc_now

log = logging.getLogger(__name__)


class LeaseLostError(FfeError):
    """Another agent took this account's lease: this one must stop trading at once."""


@dataclass(slots=True, eq=False)
class PendingDecision:
    """A decision row on its way to the journal; ``id`` is set once it is written."""

    row: dict[str, Any]
    id: int | None = None


@dataclass(slots=True)
class _Buffer:
    decisions: list[PendingDecision] = field(default_factory=list)
    verdicts: list[tuple[PendingDecision | None, dict[str, Any]]] = field(default_factory=list)
    orders: list[tuple[PendingDecision | None, dict[str, Any]]] = field(default_factory=list)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    equity: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[tuple[PendingDecision, dict[str, Any]]] = field(default_factory=list)
    approvals: list[tuple[PendingDecision | None, dict[str, Any]]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.decisions)
            + len(self.verdicts)
            + len(self.orders)
            + len(self.updates)
            + len(self.fills)
            + len(self.trades)
            + len(self.equity)
            + len(self.outcomes)
            + len(self.approvals)
        )


class AgentJournal:
    """Buffered writer for one run of one account."""

    def __init__(self, db: Database, run_id: str, account: str, owner: str) -> None:
        self.db = db
        self.run_id = run_id
        self.account = account
        self.owner = owner
        self._buffer = _Buffer()
        self._order_ids: dict[str, int] = {}
        self.flushes = 0

    @property
    def pending_rows(self) -> int:
        return len(self._buffer)

    # -- buffering (no I/O) ---------------------------------------------------------------

    def decision(self, row: dict[str, Any]) -> PendingDecision:
        pending = PendingDecision(row)
        self._buffer.decisions.append(pending)
        return pending

    def verdict(self, decision: PendingDecision | None, row: dict[str, Any]) -> None:
        self._buffer.verdicts.append((decision, row))

    def order(self, decision: PendingDecision | None, row: dict[str, Any]) -> None:
        self._buffer.orders.append((decision, row))

    def order_update(self, order: BrokerOrder) -> None:
        self._buffer.updates[order.client_id] = {
            "cid": order.client_id,
            "status": order.status.value,
            "filled_quantity": order.filled_quantity,
            "broker_order_id": order.broker_id,
        }

    def fill(
        self,
        client_id: str,
        time: datetime,
        symbol: str,
        qty: float,
        price: float,
        commission: float,
    ) -> None:
        self._buffer.fills.append(
            {
                "cid": client_id,
                "time": time,
                "symbol": symbol,
                "quantity": qty,
                "price": price,
                "commission": commission,
            }
        )

    def trade(self, trade: Trade) -> None:
        self._buffer.trades.append(trade)

    def equity(self, time: datetime, equity: float, cash: float) -> None:
        self._buffer.equity.append({"time": time, "equity": equity, "cash": cash})

    def outcome(self, decision: PendingDecision, row: dict[str, Any]) -> None:
        self._buffer.outcomes.append((decision, row))

    def approval(self, decision: PendingDecision | None, row: dict[str, Any]) -> None:
        self._buffer.approvals.append((decision, row))

    # -- writing --------------------------------------------------------------------------

    async def flush(
        self, checkpoint: Mapping[str, Any], last_bar_time: datetime | None, lease_until: datetime
    ) -> None:
        """Write everything buffered, the checkpoint and the lease in one transaction.
        On failure nothing is written and the buffer is kept for the next attempt."""
        buffer = self._buffer
        with self.db.errors("write the agent's journal"):
            async with self.db.engine.begin() as connection:
                await self._write(connection, buffer)
                renewed = await connection.execute(
                    update(AgentState)
                    .where(AgentState.account == self.account, AgentState.owner == self.owner)
                    .values(
                        checkpoint=dict(checkpoint),
                        last_bar_time=last_bar_time,
                        lease_expires_at=lease_until,
                        updated_at=utc_now(),
                    )
                )
                if renewed.rowcount != 1:  # rolls the whole write back
                    raise LeaseLostError(
                        f"agent {self.owner} lost the lease on account {self.account!r} to "
                        "another agent: stopping without writing"
                    )
        self._buffer = _Buffer()
        self.flushes += 1

    async def _write(self, connection: AsyncConnection, buffer: _Buffer) -> None:
        run_id = self.run_id
        if buffer.decisions:
            rows = [{**p.row, "run_id": run_id} for p in buffer.decisions]
            ids = await _insert_returning(connection, DecisionRow.__table__, rows)
            for pending, new_id in zip(buffer.decisions, ids, strict=True):
                pending.id = new_id
        await _insert(connection, RiskVerdict.__table__, _linked(buffer.verdicts, run_id))
        if buffer.orders:
            rows = _linked(buffer.orders, run_id)
            ids = await _insert_returning(connection, Order.__table__, rows)
            self._order_ids.update(zip((r["client_order_id"] for r in rows), ids, strict=True))
        await _insert(connection, Approval.__table__, _linked(buffer.approvals, run_id))
        if buffer.updates:
            await connection.execute(
                update(Order)
                .where(Order.client_order_id == bindparam("cid"))
                .values(
                    status=bindparam("status"),
                    filled_quantity=bindparam("filled_quantity"),
                    broker_order_id=bindparam("broker_order_id"),
                    updated_at=utc_now(),
                )
                .execution_options(synchronize_session=False),
                list(buffer.updates.values()),
            )
        await self._write_fills(connection, buffer.fills)
        await _insert(
            connection, TradeRow.__table__, [_trade_row(t, run_id) for t in buffer.trades]
        )
        await _insert(
            connection, EquityPoint.__table__, [{**r, "run_id": run_id} for r in buffer.equity]
        )
        outcomes = [{**row, "decision_id": d.id} for d, row in buffer.outcomes]
        await _insert(connection, DecisionOutcome.__table__, outcomes)

    async def _write_fills(self, connection: AsyncConnection, fills: list[dict[str, Any]]) -> None:
        if not fills:
            return
        missing = {f["cid"] for f in fills} - self._order_ids.keys()
        if missing:
            query = select(Order.client_order_id, Order.id).where(
                Order.client_order_id.in_(missing)
            )
            self._order_ids.update({cid: i for cid, i in (await connection.execute(query)).all()})
        rows = []
        for fill in fills:
            row = {k: v for k, v in fill.items() if k != "cid"}
            rows.append(
                {**row, "run_id": self.run_id, "order_id": self._order_ids.get(fill["cid"])}
            )
        await _insert(connection, Fill.__table__, rows)


def _linked(
    items: Sequence[tuple[PendingDecision | None, dict[str, Any]]], run_id: str
) -> list[dict[str, Any]]:
    return [
        {**row, "run_id": run_id, "decision_id": None if d is None else d.id} for d, row in items
    ]


def _trade_row(trade: Trade, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "symbol": trade.symbol,
        "entry_time": trade.entry_time,
        "exit_time": trade.exit_time,
        "entry_price": trade.entry_price,
        "exit_price": trade.exit_price,
        "quantity": trade.quantity,
        "pnl": trade.pnl,
        "commission": trade.commission,
    }


async def _insert(connection: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(insert(table), rows)


async def _insert_returning(
    connection: AsyncConnection, table: Any, rows: list[dict[str, Any]]
) -> list[int]:
    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    result = await connection.execute(statement, rows)
    return [int(row[0]) for row in result.all()]
