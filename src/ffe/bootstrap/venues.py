"""Kalshi wired from its settings section: the broker and the market data feed (ccxt and OANDA
brokers are built in ``ffe.bootstrap.agent_broker``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    from ffe.config import Settings
    from ffe.data.kalshi import KalshiSource
    from ffe.domain.contracts import BinaryContract
    from ffe.execution.kalshi_broker import KalshiBroker


def recorded_contracts(data_dir: Path, symbols: Iterable[str]) -> tuple[BinaryContract, ...]:
    """The binary contracts recorded with ``symbols``' bars (``ffe.data.kalshi``), for the paper
    agent to settle; symbols without one are ordinary instruments."""
    from ffe.data.kalshi import load_contract

    found = (load_contract(data_dir, symbol) for symbol in symbols)
    return tuple(contract for contract in found if contract is not None)


def kalshi_feed(settings: Settings, api_url: str | None = None) -> KalshiSource:
    """Kalshi's market data (``ffe data fetch --source kalshi``): ``api_url`` (``--api-url``),
    else ``kalshi.data_url``, else Kalshi's public production API. Reading market data needs
    no key and trades nothing."""
    from ffe.bootstrap.feeds import check_api_url
    from ffe.data.kalshi import PUBLIC_URL, KalshiSource

    return KalshiSource(check_api_url(api_url) or settings.kalshi.data_url or PUBLIC_URL)


def kalshi_broker(settings: Settings, *, allow_live: bool) -> KalshiBroker:
    """The Kalshi broker of the ``kalshi`` settings: the demo environment unless
    ``kalshi.environment`` is production and the live switch is on (``allow_live``)."""
    from ffe.execution.kalshi_auth import read_private_key
    from ffe.execution.kalshi_broker import KalshiBroker

    kalshi = settings.kalshi
    if kalshi.key_id is None or kalshi.private_key_path is None:
        raise ConfigError(
            "agent.broker=kalshi needs kalshi.key_id and kalshi.private_key_path (the API key "
            "made on the Kalshi account page, demo or production)"
        )
    production = kalshi.environment == "production"
    return KalshiBroker(
        kalshi.key_id,
        read_private_key(kalshi.private_key_path),
        environment=kalshi.environment,
        live=allow_live and production,
        base_url=kalshi.base_url,
        time_in_force=kalshi.time_in_force,
        price_bound=kalshi.price_bound,
        reads_per_s=kalshi.reads_per_s,
        writes_per_s=kalshi.writes_per_s,
    )
