"""Pure value types shared by every layer. Imports nothing else from ffe.

The names are loaded on first use (PEP 562), so a command that only needs an error class
(``ffe config show``) does not pay for numpy, which ``History`` needs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "errors": (
        "BrokerError",
        "ConfigError",
        "DataError",
        "FfeError",
        "StrategyError",
        "TemporaryBrokerError",
    ),
    "market": ("FIELDS", "History", "MarketData"),
    "orders": (
        "Approved",
        "Decision",
        "Denied",
        "Fill",
        "Order",
        "OrderIntent",
        "OrderStatus",
        "Side",
        "Trade",
        "Verdict",
    ),
    "timeframe": ("Timeframe",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ffe.domain.{module}"), name)
    globals()[name] = value
    return value
