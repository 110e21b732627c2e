"""Live feeds from the settings: each source's URL, key and retry policy (``data.*``), with
``--api-url`` over the configured URL."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ffe.domain import ConfigError

if TYPE_CHECKING:
    from ffe.config import Settings
    from ffe.data.feed import LiveFeed
    from ffe.data.feeds import FeedOptions

_URL = re.compile(r"https?://[^/\s]+(/\S*)?")


def check_api_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) URL; ConfigError saying how to write one otherwise."""
    if url is not None and not _URL.fullmatch(url):
        raise ConfigError(
            f"--api-url {url!r} is not an http(s) URL: write it like http://127.0.0.1:8080/api/v3"
        )
    return url


def feed_options(settings: Settings, source: str, api_url: str | None = None) -> FeedOptions:
    """How to reach ``source``: its configured URL (or ``api_url``), key and retries."""
    from ffe.data.feeds import FeedOptions

    data = settings.data
    kind, _, exchange = source.strip().lower().partition(":")
    secret = {"alphavantage": data.alpha_vantage_key, "oanda": data.oanda_token}.get(kind)
    if kind == "oanda" and secret is None:
        secret = settings.agent.oanda_token
    configured = {"alphavantage": data.alpha_vantage_url, "oanda": data.oanda_url}.get(kind)
    if kind == "ccxt":
        configured = data.ccxt_urls.get(exchange)
    return FeedOptions(
        api_url=check_api_url(api_url) or configured,
        api_key=None if secret is None else secret.get_secret_value(),
        timeout_s=data.feed_timeout_s,
        retries=data.feed_retries,
        backoff_s=data.feed_backoff_s,
        max_backoff_s=max(data.feed_max_backoff_s, data.feed_backoff_s),
        full_history=data.alpha_vantage_full,
    )


def open_feed(settings: Settings, source: str, api_url: str | None = None) -> LiveFeed:
    """The live feed ``source`` names, as the settings (and ``api_url``) reach it."""
    from ffe.data.feeds import open_feed as make

    return make(source, feed_options(settings, source, api_url))
