"""Request bodies, and the answers the spec describes.

Bodies refuse unknown fields, so a typo gets a 422 that names it instead of being ignored.
Answers (``Answer`` and below) only document what the routes send: the routes name them in
``responses=``, never ``response_model=``, so nothing is validated or re-serialized per
request, and what a route sends stays exactly what it builds (see ``ffe.api.queries``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ffe.api.fields import (
    CLOSED,
    SYMBOL_PATTERN,
    Day,
    Metric,
    ParamName,
    Scalar,
    StrategyName,
    Symbol,
    model_pattern,
)


class Body(BaseModel):
    """A request body: unknown fields, NaN and infinities refused."""

    # NaN and infinities parse as JSON numbers in Python; no amount of money is either.

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)


class Dated(Body):
    """A body with an optional ``start`` and ``end`` date (YYYY-MM-DD, start not after end)."""

    start: Day | None = None
    end: Day | None = None

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

    strategy: StrategyName = "sma_cross"
    symbols: list[Symbol] = Field(default_factory=lambda: ["SP500"], min_length=1, max_length=50)
    params: dict[ParamName, Scalar] = Field(default_factory=dict, json_schema_extra=CLOSED)
    speed: float | None = Field(20.0, ge=0, le=100_000, description="bars per second; 0: at once")
    approval: Literal["auto", "manual", "on_new_asset"] | None = None
    fresh: bool = False

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, symbols: object) -> object:
        return _check_symbols(symbols)


class AgentCommandBody(Body):
    """Which account a command is for (default: agent.account)."""

    account: str | None = Field(None, min_length=1, max_length=64)


class PositionCloseBody(Body):
    """Which account's position to close, and the quantity the person confirmed."""

    account: str | None = Field(None, min_length=1, max_length=64)
    quantity: float | None = Field(
        None,
        allow_inf_nan=False,
        description="the position's signed quantity as confirmed; refused when it changed",
    )


class BacktestRequest(Dated):
    """A backtest to run as a job."""

    strategy: StrategyName = "sma_cross"
    symbols: list[Symbol] = Field(default_factory=lambda: ["SP500"], min_length=1, max_length=500)
    params: dict[ParamName, Scalar] = Field(default_factory=dict, json_schema_extra=CLOSED)
    cash: float | None = Field(None, gt=0, le=1e15, description="none: backtest.cash")
    commission: float | None = Field(
        None, ge=0, lt=1, description="fraction of the traded notional; none: backtest.commission"
    )
    slippage_bps: float | None = Field(
        None, ge=0, lt=10_000, description="basis points; none: backtest.slippage_bps"
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, symbols: object) -> object:
        return _check_symbols(symbols)


class SweepRequest(Dated):
    """A parameter grid to backtest, ranked by ``metric``."""

    strategy: StrategyName = "sma_cross"
    symbol: str = Field("SP500", pattern=SYMBOL_PATTERN)
    grid: dict[ParamName, Annotated[list[Scalar], Field(min_length=1, max_length=2_000)]] = Field(
        min_length=1, max_length=4, json_schema_extra=CLOSED
    )
    metric: Metric = "sharpe"

    @field_validator("grid", mode="before")
    @classmethod
    def _no_empty(cls, grid: object) -> object:
        # before the type's own bounds, for a sentence that names the parameter
        for name, values in grid.items() if isinstance(grid, dict) else ():
            if values == []:
                raise ValueError(f"grid parameter {name!r} has no values")
        return grid

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        total = 1
        for values in grid.values():
            total *= len(values)
        if total > 2_000:
            raise ValueError(f"the grid has {total} points; at most 2000 per sweep")
        return grid


class TuneRequest(Dated):
    """A study: ``trials`` trials of ``params``' ranges, by ``metric`` out of sample."""

    strategy: StrategyName = "sma_cross"
    symbol: str = Field("SP500", pattern=SYMBOL_PATTERN)
    params: dict[ParamName, Annotated[str, Field(pattern=r"^[-0-9.,:a-zA-Z_]{1,64}$")]] = Field(
        min_length=1, max_length=4, json_schema_extra=CLOSED,
        description="ranges as `ffe tune --param` takes them: {\"fast\": \"5..60\"}",
    )  # fmt: skip
    trials: int = Field(100, ge=1, le=100_000, description="at most tune.max_trials")
    metric: Metric = "sharpe"
    walk_forward: str = Field("train=750,test=250", max_length=40)
    holdout: float = Field(0.2, ge=0, le=1_000_000)
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "asha", "none"] = "median"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    study: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ForecastBenchRequest(Dated):
    """A forecast benchmark: every model against the random walk."""

    symbol: str = Field("SP500", pattern=SYMBOL_PATTERN)
    horizons: list[Annotated[int, Field(ge=1, le=60)]] = Field(
        default_factory=lambda: [1, 5], min_length=1, max_length=5
    )
    models: Annotated[str, Field(json_schema_extra=model_pattern)] | None = Field(
        None, max_length=200, description="comma-separated model names; none or empty: all"
    )
    window: int = Field(500, ge=30, le=10_000)
    refit_every: int = Field(21, ge=1, le=1_000)

    @field_validator("horizons", mode="before")
    @classmethod
    def _horizons(cls, horizons: object) -> object:
        # before the type's own bounds, for one sentence instead of one error per horizon
        if isinstance(horizons, list) and any(
            isinstance(h, int | float) and not 1 <= h <= 60 for h in horizons
        ):
            raise ValueError("horizons are 1 to 60 bars")
        return horizons


class KeyRequest(Body):
    """An API key to make."""

    name: str = Field(min_length=1, max_length=64)
    scopes: list[Literal["read", "trade", "admin"]] = Field(min_length=1)


def _check_symbols(symbols: object) -> object:
    """A sentence for the first string that is not a symbol (other shapes: the type's error)."""
    import re

    for symbol in symbols if isinstance(symbols, list) else ():
        if isinstance(symbol, str) and not re.fullmatch(SYMBOL_PATTERN, symbol.strip()):
            raise ValueError(f"{symbol!r} is not a symbol (letters, digits and ._:/- only)")
    return symbols


# -- answers ---------------------------------------------------------------------------------


class Answer(BaseModel):
    """An answer as the spec describes it; answers may carry fields added later."""

    model_config = ConfigDict(extra="allow")


class Page(Answer):
    """A page of a list: ``items``, how many there are in all, and the page asked for."""

    total: int = Field(description="items in all (a lower bound for runs)")
    limit: int
    offset: int


class AgentState(Answer):
    """An account's agent as the journal records it."""

    account: str
    status: Literal["running", "paused", "halted", "stopped", "finished"] = Field(
        description="finished: its replay reached the end of the data"
    )
    running: bool = Field(
        description="whether a live agent holds the account's lease now (unexpired, and not "
        "held by a process of this host that has ended)"
    )
    run_id: str | None
    owner: str | None
    lease_expires_at: datetime | None
    halted_reason: str | None
    last_bar_time: datetime | None
    bar: int | None
    llm_failures: int | None = Field(
        None,
        description="the run's decisions its LLM voter failed to vote on so far (0 for a "
        "strategy without one); each says why in its rationale",
    )


class RunDefaults(Answer):
    """What a backtest takes from this server's ``backtest`` and ``risk`` settings when its
    request leaves it out; the dashboard's forms start from these."""

    cash: float
    commission: float = Field(description="fraction of the traded notional")
    fixed_commission: float = Field(description="currency per fill")
    slippage_bps: float
    fill_at: Literal["next_open", "close"]
    lot_size: float = Field(description="smallest tradable quantity; 1 is whole units")
    max_position_pct: float
    max_gross_leverage: float
    max_drawdown: float | None = Field(description="halt and flatten at this drawdown")


class JobCounts(Answer):
    """Jobs waiting and running, and the workers alive to run them."""

    queued: int
    running: int
    workers: int = Field(0, description="processes running jobs that beat now")


class Status(Answer):
    """Version, mode, agents and jobs at a glance."""

    version: str
    environment: str
    mode: Literal["paper", "live"]
    time: datetime
    uptime_s: float
    redis: bool = Field(description="whether Redis is configured")
    agents: list[AgentState]
    jobs: JobCounts


class ReplaySummary(Answer):
    """A finished replay set against buy and hold, and what to try next."""

    strategy: str
    symbols: list[str]
    total_return: float
    benchmark_return: float = Field(description="buy and hold, its purchase paying the costs")
    beat_benchmark: bool
    max_drawdown: float = Field(description="a fraction <= 0")
    trades: int
    win_rate: float | None = Field(description="null: no closed trade")
    costs: str
    next_steps: list[str] = Field(description="commands to run next")


class Supervised(Answer):
    """The paper agent this process runs (or last ran)."""

    running: bool
    account: str
    strategy: str | None
    symbols: list[str]
    params: dict[str, Any]
    speed: float | None = Field(description="bars per second; null: at once")
    error: str | None = Field(description="why it stopped, when it failed")
    restarting: bool = Field(
        False, description="it failed on the journal and is restarted once the journal answers"
    )
    restarts: int = Field(0, description="restarts after journal failures since it was started")
    chosen: str | None = Field(
        None, description="how its strategy was chosen, when it trades the demo's (ffe run)"
    )
    finished: bool = Field(False, description="its replay ran to the end of the data")
    summary: ReplaySummary | None = Field(None, description="the finished replay's summary")


class Agents(Answer):
    """Every account's agent, and the one this process runs."""

    agents: list[AgentState]
    supervised: Supervised


class Outcome(Answer):
    """What followed a decision once its horizon had passed."""

    horizon: int = Field(description="bars")
    realized_return: float | None
    hit: bool | None


class OutcomeStatus(Answer):
    """Where a decision's outcome stands, and why, in one sentence (``text``)."""

    state: Literal["resolved", "pending", "unresolved", "unscored"]
    text: str
    horizon: int | None = Field(description="bars the decision is scored over")
    bars_left: int | None = Field(description="bars still to come before it resolves")
    resolves_at: datetime | None = Field(description="when it resolves (or did, unresolved)")
    estimated: bool = Field(description="resolves_at extrapolated from the bar spacing")
    realized_return: float | None = Field(description="log return over the horizon")
    hit: bool | None


class Decision(Answer):
    """What the engine decided for one symbol at one bar, and why."""

    id: int
    run_id: str
    time: datetime
    symbol: str
    target: float | None = Field(description="the position aimed at; null: keep (hold)")
    action: Literal["buy", "sell", "flat", "hold"]
    confidence: float | None
    rationale: str | None
    votes: dict[str, Any] | None
    outcome: Outcome | None
    outcome_status: OutcomeStatus


class DecisionPage(Page):
    """A page of decisions, newest first."""

    items: list[Decision]


class Approval(Answer):
    """An order waiting for a person, or decided by one."""

    id: int
    account: str
    run_id: str
    client_order_id: str
    time: datetime
    symbol: str
    quantity: float
    reference_price: float
    rationale: str | None
    status: Literal["pending", "approved", "rejected", "expired", "sent"]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None


class PositionClosed(Answer):
    """What the agent did with a request to close a position."""

    status: Literal["sent", "waiting", "queued"] = Field(
        description="sent to the broker; waiting for approval; or queued (no answer yet)"
    )
    detail: str
    account: str
    symbol: str
    quantity: float | None = Field(description="the closing order's, signed")
    client_order_id: str | None
    command_id: int
    approval: Approval | None = Field(description="the approval it waits for, if it does")


class ApprovalPage(Page):
    """A page of approvals, newest first."""

    items: list[Approval]


class RunSummary(Answer):
    """A run: what ran, on what, its status and statistics."""

    id: str
    kind: Literal["backtest", "paper", "live"]
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    timeframe: str | None
    status: Literal["running", "finished", "failed", "interrupted"]
    started_at: datetime
    finished_at: datetime | None
    code_version: str
    data_fingerprint: str | None
    config: dict[str, Any]
    stats: dict[str, Any] | None
    error: str | None


class RunPage(Page):
    """A page of runs, newest first."""

    items: list[RunSummary]


class JobAnswer(Answer):
    """A background job: a backtest, a parameter sweep, a forecast benchmark or a study."""

    id: str
    kind: Literal["backtest", "sweep", "forecast_bench", "tune"]
    status: Literal["queued", "running", "finished", "failed", "cancelled"]
    waiting: str | None = Field(
        None, description='"queued: no worker is running" while queued with no worker alive'
    )
    progress: float = Field(description="0 to 1")
    error: str | None = Field(description="why it failed or was cancelled")
    attempts: int = Field(0, description="times a worker took it (a retry after a worker died)")
    run_id: str | None
    payload: dict[str, Any]
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
