"""Request bodies. Unknown fields are refused, so a typo gets a 422 that names it instead of
being ignored."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SYMBOL = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
Scalar = int | float | str | bool


class Body(BaseModel):
    """A request body: unknown fields, NaN and infinities refused."""

    # NaN and infinities parse as JSON numbers in Python; no amount of money is either.

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


class Dated(Body):
    """A body with an optional ``start`` and ``end`` date (YYYY-MM-DD, start not after end)."""

    start: str | None = Field(None, pattern=_DATE)
    end: str | None = Field(None, pattern=_DATE)

    @field_validator("start", "end")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a calendar date (YYYY-MM-DD)") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Dated:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}: swap them")
        return self


class Login(Body):
    """A dashboard login."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class AgentStart(Body):
    """What the paper agent started here trades."""

    strategy: str = Field("sma_cross", min_length=1, max_length=64)
    symbols: list[str] = Field(default_factory=lambda: ["SP500"], min_length=1, max_length=50)
    params: dict[str, Scalar] = Field(default_factory=dict)
    speed: float | None = Field(20.0, ge=0, le=100_000, description="bars per second; 0: at once")
    approval: Literal["auto", "manual", "on_new_asset"] | None = None
    fresh: bool = False

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: list[str]) -> list[str]:
        return _check_symbols(symbols)


class AgentCommandBody(Body):
    """Which account a command is for (default: agent.account)."""

    account: str | None = Field(None, min_length=1, max_length=64)


class BacktestRequest(Dated):
    """A backtest to run as a job."""

    strategy: str = Field("sma_cross", min_length=1, max_length=64)
    symbols: list[str] = Field(default_factory=lambda: ["SP500"], min_length=1, max_length=500)
    params: dict[str, Scalar] = Field(default_factory=dict)
    cash: float | None = Field(None, gt=0, le=1e15)
    commission: float | None = Field(None, ge=0, lt=1)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: list[str]) -> list[str]:
        return _check_symbols(symbols)


class SweepRequest(Dated):
    """A parameter grid to backtest, ranked by ``metric``."""

    strategy: str = Field("sma_cross", min_length=1, max_length=64)
    symbol: str = Field("SP500", pattern=_SYMBOL)
    grid: dict[str, list[Scalar]] = Field(min_length=1, max_length=4)
    metric: str = Field("sharpe", min_length=1, max_length=32)

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        total = 1
        for name, values in grid.items():
            if not values:
                raise ValueError(f"grid parameter {name!r} has no values")
            total *= len(values)
        if total > 2_000:
            raise ValueError(f"the grid has {total} points; at most 2000 per sweep")
        return grid


class ForecastBenchRequest(Dated):
    """A forecast benchmark: every model against the random walk."""

    symbol: str = Field("SP500", pattern=_SYMBOL)
    horizons: list[int] = Field(default_factory=lambda: [1, 5], min_length=1, max_length=5)
    models: str | None = Field(None, max_length=200, description="comma-separated; none: all")
    window: int = Field(500, ge=30, le=10_000)
    refit_every: int = Field(21, ge=1, le=1_000)

    @field_validator("horizons")
    @classmethod
    def _horizons(cls, horizons: list[int]) -> list[int]:
        if any(h < 1 or h > 60 for h in horizons):
            raise ValueError("horizons are 1 to 60 bars")
        return horizons


class KeyRequest(Body):
    """An API key to make."""

    name: str = Field(min_length=1, max_length=64)
    scopes: list[Literal["read", "trade", "admin"]] = Field(min_length=1)


def _check_symbols(symbols: list[str]) -> list[str]:
    import re

    for symbol in symbols:
        if not re.fullmatch(_SYMBOL, symbol):
            raise ValueError(f"{symbol!r} is not a symbol (letters, digits and ._:/- only)")
    return symbols
