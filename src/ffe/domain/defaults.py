"""The one set of trading defaults: starting cash, costs, sizing and risk limits.

The settings (``backtest`` and ``risk`` sections), the pipeline's own configs
(``BacktestConfig``, ``AgentConfig``), the command line, the API and the dashboard's forms all
take these numbers from here, so a run started from any of them with nothing overridden is the
same run. ``docs/configuration.md`` explains each choice;
``tests/unit/domain/test_defaults.py`` checks every place that states one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Whole units: the smallest quantity of an instrument that trades only in whole shares or
# contracts (a Kalshi contract; backtesting.py, which the parity tests compare against).
WHOLE_UNITS = 1.0


@dataclass(frozen=True, slots=True)
class TradingDefaults:
    """What a run uses when nothing overrides it."""

    cash: float = 10_000.0
    # 10 bp of the traded notional: a stock or ETF broker's commission plus exchange and
    # regulatory fees, and the taker fee of the large crypto spot venues (about 0.1 %).
    commission: float = 0.001
    fixed_commission: float = 0.0
    # 2 bp against the trader on every fill: half the quoted spread of a liquid index ETF
    # or large-cap stock at the open, plus a little market impact.
    slippage_bps: float = 2.0
    # A millionth of a unit: fractional shares and crypto lots, so a 100 % target is about
    # 100 % invested at any price. Instruments traded in whole units set 1.
    lot_size: float = 1e-6
    max_position_pct: float = 1.0  # no single position above the account's equity
    max_gross_leverage: float = 1.0  # no borrowing: positions add up to at most equity
    max_drawdown: float | None = 0.3  # halt and flatten 30 % below the peak

    def as_dict(self) -> dict[str, Any]:
        """The defaults by name, as the API sends them."""
        return asdict(self)


DEFAULTS = TradingDefaults()


def lot_for(lot_size: float, *, whole: bool) -> float:
    """``lot_size``, or at least one whole unit when the instrument trades only in whole
    units (a binary contract), so a fractional default never reaches such a venue."""
    return max(lot_size, WHOLE_UNITS) if whole else lot_size


@dataclass(frozen=True, slots=True)
class DemoChoice:
    """What ``ffe run`` (``make run``) trades when told nothing, and how it was chosen: by a
    sweep ranked on ``metric`` over bars that end before the replay begins, so the replay
    shows the choice on a period it never saw. ``tests/integration/test_demo_choice.py``
    runs that sweep again and checks it still picks ``params``."""

    strategy: str = "sma_cross"
    params: tuple[tuple[str, int], ...] = (("fast", 50), ("slow", 200))
    symbol: str = "SP500"
    chosen_from: str = "1999-01-01"
    chosen_to: str = "2009-12-31"
    grid: tuple[tuple[str, tuple[int, ...]], ...] = (
        ("fast", (10, 20, 30, 40, 50)),
        ("slow", (50, 100, 150, 200)),
    )
    metric: str = "sharpe"
    replay_start: str = "2010-01-01"

    def param_args(self) -> list[str]:
        """The parameters as ``--param`` values (``fast=50``)."""
        return [f"{key}={value}" for key, value in self.params]

    def sweep_command(self) -> str:
        """The command that made the choice."""
        axes = " ".join(f"--param {key}={','.join(map(str, vals))}" for key, vals in self.grid)
        return (
            f"ffe backtest sweep --strategy {self.strategy} --symbol {self.symbol} {axes} "
            f"--metric {self.metric} --start {self.chosen_from} --end {self.chosen_to}"
        )

    def story(self) -> str:
        """One line: what trades, how it was chosen, what it has not seen."""
        params = ", ".join(f"{key}={value}" for key, value in self.params)
        return (
            f"{self.strategy} ({params}) on {self.symbol}, the best {self.metric} of a sweep "
            f"on {self.chosen_from[:4]}-{self.chosen_to[:4]}; the replay from "
            f"{self.replay_start} was never seen by that choice"
        )


DEMO = DemoChoice()
