"""Closing one position when a person asks (the ``close`` command): a market order for the
whole position, through the risk engine and the approval policy like any order the strategy
makes, never straight to the broker.

What came of it is an outcome the sender reads back from the command's row: ``sent`` (the
order went to the broker), ``waiting`` (the approval policy queued it for a person),
``denied`` (the risk engine said no, and why), or ``refused`` (nothing to close, no price
yet, or the position is not the one the person confirmed).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from ffe.agent.step import StepCore
from ffe.domain.orders import Denied, OrderIntent
from ffe.portfolio.ledger import DUST
from ffe.risk.engine import AccountState

log = logging.getLogger(__name__)

# The quantity a person confirmed may differ from the one held by this much (relative) and
# still be the same position: fractional sizing leaves float dust.
_SAME = 1e-6


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    """What the agent did with a request to close ``symbol``."""

    status: str  # sent | waiting | denied | refused
    detail: str
    symbol: str
    quantity: float = 0.0  # the order's, signed (negative closes a long)
    client_order_id: str | None = None
    check: str | None = None  # the risk check that denied it

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "symbol": self.symbol,
            "quantity": self.quantity,
            "client_order_id": self.client_order_id,
            "check": self.check,
        }


async def close_position(
    core: StepCore, symbol: str, confirmed: float | None, tag: str
) -> CloseOutcome:
    """Order the whole position in ``symbol`` closed at the last bar's close, if the risk
    engine approves; queued instead when the approval policy says a person must decide.
    ``confirmed`` is the quantity the person saw (None: whatever is held); ``tag`` makes the
    order's client id unique (the command's id)."""
    refused = _refusal(core, symbol, confirmed)
    if refused is not None:
        log.info("close %s refused: %s", symbol, refused)
        return CloseOutcome("refused", refused, symbol)
    bar, column = core.last_bar, core.index[symbol]
    held = core.ledger.held[column]
    price = core.marks().item(bar, column)
    client_id = f"{core.prefix}-{bar}-{column}-x{tag}"
    intent = OrderIntent(client_id, core.market.time_of(bar), symbol, -held, price)
    verdict = core.risk.evaluate([intent], _account(core, symbol, held))[0]
    core.journal_verdict(None, verdict)
    if isinstance(verdict, Denied):
        core.denials.append((bar, verdict))
        detail = f"the risk engine denied closing {symbol}: {verdict.reason}"
        return CloseOutcome("denied", detail, symbol, -held, client_id, verdict.check)
    return await _carry_out(core, verdict.intent)


def _refusal(core: StepCore, symbol: str, confirmed: float | None) -> str | None:
    """Why there is nothing to close as asked, or None."""
    column, account = core.index.get(symbol), core.config.account
    if column is None:
        trades = ", ".join(core.market.symbols)
        return f"the agent on account {account} does not trade {symbol} (it trades {trades})"
    held = core.ledger.held.get(column, 0.0)
    if abs(held) <= DUST:
        return f"no open position in {symbol} on account {account}"
    if core.last_bar < 0:
        return f"no bar has been seen yet: no price to close {symbol} at"
    if confirmed is not None and not math.isclose(confirmed, held, rel_tol=_SAME, abs_tol=DUST):
        return (
            f"the position in {symbol} is {held:g} now, not the {confirmed:g} confirmed: "
            "look again and confirm the new quantity"
        )
    return None


def _account(core: StepCore, symbol: str, held: float) -> AccountState:
    """The account as the strategy's orders see it at the last bar."""
    equity, gross = core.ledger.marked(core.marks(), core.last_bar)
    peak, halted = max(core.peak, equity), core.halted_at is not None
    return AccountState(equity, peak, {symbol: held}, gross, halted, core.context)


async def _carry_out(core: StepCore, intent: OrderIntent) -> CloseOutcome:
    """Queue ``intent`` for approval or send it; journaled at once either way, so the
    approval (or the order) is there for whoever asked."""
    symbol, quantity, client_id = intent.symbol, intent.quantity, intent.client_id
    if await core.desk.needs_approval(intent, core):
        core.desk.queue(intent, None, core)
        await core.flush()
        core.desk.queued_since_flush = 0
        detail = f"closing {symbol} ({quantity:+g}) waits for approval"
        return CloseOutcome("waiting", detail, symbol, quantity, client_id)
    order = await core.send(intent, None)
    await core.flush()
    if order is None:  # the broker refused it; send() journaled why
        detail = f"the broker did not take the order closing {symbol}"
        return CloseOutcome("refused", detail, symbol, quantity, client_id)
    detail = f"order {client_id} sent: {symbol} {quantity:+g} at market"
    return CloseOutcome("sent", detail, symbol, quantity, client_id)
