"""Which bars a use case runs on, and loading them: the data catalog's symbols or a
synthetic market, cut to a date range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ffe.bootstrap import Components
    from ffe.domain.market import MarketData


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """``symbols`` from the data catalog, or (``synthetic`` > 0) that many synthetic symbols of
    ``bars`` bars made from ``seed``; ``start`` and ``end`` (YYYY-MM-DD, inclusive) cut either."""

    symbols: tuple[str, ...] = ("SP500",)
    start: str | None = None
    end: str | None = None
    synthetic: int = 0
    bars: int = 2520
    seed: int = 0


def load_bars(components: Components, spec: MarketSpec) -> MarketData:
    """The bars ``spec`` names, aligned; a ``DataError`` names a symbol with none."""
    from ffe.data import SyntheticMarket, load_market

    symbols = list(spec.symbols)
    if spec.synthetic:
        source: Any = SyntheticMarket(spec.synthetic, spec.bars, seed=spec.seed)
        if spec.start is None and spec.end is None:
            return source.to_market()  # type: ignore[no-any-return]
        symbols = source.symbols()
    else:
        source = components.catalog()
    return load_market(source, symbols, start=spec.start, end=spec.end)
