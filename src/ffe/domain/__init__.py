"""Pure value types shared by every layer. Imports nothing else from ffe."""

from ffe.domain.errors import (
    BrokerError,
    ConfigError,
    DataError,
    FfeError,
    StrategyError,
    TemporaryBrokerError,
)
from ffe.domain.market import FIELDS, History, MarketData
from ffe.domain.orders import (
    Approved,
    Decision,
    Denied,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    Side,
    Trade,
    Verdict,
)
from ffe.domain.timeframe import Timeframe

__all__ = [
    "FIELDS",
    "Approved",
    "BrokerError",
    "ConfigError",
    "DataError",
    "Decision",
    "Denied",
    "FfeError",
    "Fill",
    "History",
    "MarketData",
    "Order",
    "OrderIntent",
    "OrderStatus",
    "Side",
    "StrategyError",
    "TemporaryBrokerError",
    "Timeframe",
    "Trade",
    "Verdict",
]
