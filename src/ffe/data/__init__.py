"""Market data: the ``BarSource`` port, bundled and imported bars, synthetic markets.

Every source hands out bar frames with one contract: a tz-aware UTC ``DatetimeIndex`` named
``time``, strictly increasing, and exactly the float64 columns open, high, low, close,
volume, validated. ``load_market`` aligns several symbols into a ``MarketData``.
"""

from ffe.data.align import load_market
from ffe.data.bundled import BUNDLED_SYMBOLS, BundledBarSource
from ffe.data.catalog import CatalogEntry, DataCatalog, ImportSummary
from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.data.files import read_bars_file
from ffe.data.source import BAR_COLUMNS, BarSource
from ffe.data.synthetic import SyntheticMarket
from ffe.data.validate import validate_bars

__all__ = [
    "BAR_COLUMNS",
    "BUNDLED_SYMBOLS",
    "BarSource",
    "BundledBarSource",
    "CatalogEntry",
    "DataCatalog",
    "FeedUnavailableError",
    "ImportSummary",
    "LiveFeed",
    "SyntheticMarket",
    "load_market",
    "read_bars_file",
    "validate_bars",
]
