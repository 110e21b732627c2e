"""Live feeds behind the ``LiveFeed`` port (``ffe.data.feed``): ccxt exchanges, Alpha Vantage,
OANDA. ``open_feed`` makes one from its name as ``--source`` spells it.

Each module imports its client library when it is opened, so naming one feed never loads the
others'.
"""

from __future__ import annotations

from collections.abc import Callable

from ffe.data.feed import LiveFeed
from ffe.data.feeds._common import FeedOptions
from ffe.domain import ConfigError

__all__ = ["SOURCES", "FeedOptions", "open_feed"]

SOURCES = ("ccxt:<exchange>", "alphavantage", "oanda")


def _ccxt(exchange_id: str, options: FeedOptions) -> LiveFeed:
    from ffe.data.feeds.ccxt import CcxtFeed

    return CcxtFeed(exchange_id, options)


def _alphavantage(_: str, options: FeedOptions) -> LiveFeed:
    from ffe.data.feeds.alphavantage import AlphaVantageFeed

    return AlphaVantageFeed(options)


def _oanda(_: str, options: FeedOptions) -> LiveFeed:
    from ffe.data.feeds.oanda import OandaFeed

    return OandaFeed(options)


# Each source's maker, by the name before any ':' (what follows it is the maker's argument).
# A new venue (Kalshi: ffe.data.kalshi) adds its maker here and its name to SOURCES.
_MAKERS: dict[str, Callable[[str, FeedOptions], LiveFeed]] = {
    "ccxt": _ccxt,
    "alphavantage": _alphavantage,
    "oanda": _oanda,
}


def open_feed(source: str, options: FeedOptions) -> LiveFeed:
    """The feed ``source`` names (``ccxt:binance``, ``alphavantage``, ``oanda``), reaching the
    venue as ``options`` say. ConfigError for a name no feed has."""
    kind, sep, argument = source.strip().partition(":")
    maker = _MAKERS.get(kind.lower())
    if maker is None or (kind.lower() == "ccxt") != bool(sep and argument):
        raise ConfigError(
            f"unknown source {source!r}: use one of {', '.join(SOURCES)} (like ccxt:binance)"
        )
    return maker(argument.lower(), options)
