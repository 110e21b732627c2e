"""Settling binary contracts at the end of a backtest.

The backtest loop knows nothing of expiry: it trades a Kalshi market like any instrument,
its YES price in [0, 1]. A market the run covers to its close then settles as a final step
applied to the result: each open position in it closes at its recorded result (1 for yes,
0 for no) at the last bar, commission free, in the ledger; positions and equity are
recomputed from the ledger, so the last bar's equity holds the payout instead of the last
price. The loop itself, and every result without contracts, stays as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from datetime import timedelta

from ffe.backtest.engine import marked_equity
from ffe.backtest.result import BacktestResult
from ffe.domain.contracts import BinaryContract, Settlement
from ffe.domain.market import finite_marks

log = logging.getLogger(__name__)


def settle_at_expiry(
    result: BacktestResult, contracts: Mapping[str, BinaryContract]
) -> tuple[BacktestResult, list[Settlement]]:
    """``result`` with every open position in a settled contract of ``contracts`` (by symbol)
    closed at its result, and the settlements made. A market whose close comes after the
    last bar ends is left open: the run stopped before its expiry."""
    market, ledger = result.market, copy.deepcopy(result.ledger)
    last = market.n_bars - 1
    end = market.time_of(last) + timedelta(seconds=market.timeframe.seconds)
    settlements = []
    for symbol, contract in contracts.items():
        if symbol not in market.symbols:
            continue
        price = contract.settled_by(end)
        if price is None:
            if contract.settled:
                log.info("%s closes at %s, after the run's end: left open", symbol, contract.expiry)
            continue
        quantity = ledger.settle(last, market.index_of(symbol), price)
        if quantity:
            settlements.append(Settlement(symbol, end, quantity, price))
            log.info("%s settled %s at %s: %s contracts", symbol, contract.result, price, quantity)
    if not settlements:
        return result, []
    positions = ledger.position_path(market.n_bars)
    equity = marked_equity(positions, ledger.cash_path(market.n_bars), finite_marks(market.mark))
    settled = dataclasses.replace(result, ledger=ledger, positions=positions, equity=equity)
    return settled, settlements
