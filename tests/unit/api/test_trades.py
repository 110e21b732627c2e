from datetime import UTC, datetime

from ffe.api.trades import _trade_order
from ffe.portfolio.trades import Execution, Mark, round_trips


def _at(day: int) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC)


def test_trade_order_when_a_fill_turns_long_to_short_then_the_open_short_is_newest() -> None:
    # one sell closes the long and opens the short at the same bar, as sma_cross trades
    fills = [
        Execution(_at(2), "SP500", 1.0, 100.0),
        Execution(_at(5), "SP500", -2.0, 110.0),
    ]

    found = sorted(
        round_trips(fills, {"SP500": Mark(_at(6), 105.0)}), key=_trade_order, reverse=True
    )

    assert [(t.direction, t.is_open) for t in found] == [("short", True), ("long", False)]
