from datetime import UTC, datetime

from ffe.api.trades import _trade_order
from ffe.portfolio.trades import TradeFill, round_trips


def _at(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def test_trade_order_when_a_fill_turns_long_to_short_then_the_open_short_is_newest() -> None:
    # one sell closes the long and opens the short at the same bar, as sma_cross trades
    fills = [
        TradeFill("SP500", "buy", 1.0, 100.0, 0.0, _at(2)),
        TradeFill("SP500", "sell", 2.0, 110.0, 0.0, _at(5)),
    ]

    found = sorted(round_trips(fills, {"SP500": 105.0}), key=_trade_order, reverse=True)

    assert [(t.side, t.open) for t in found] == [("short", True), ("long", False)]
