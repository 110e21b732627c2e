"""Backtests, sweeps and forecast benchmarks as background jobs: submit, poll, fetch."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from ffe.api.deps import Reader, ServicesDep, Trader
from ffe.api.queries import page
from ffe.api.routes.common import (
    Limit,
    Offset,
    not_found,
    polled,
    refusal,
    refuse_server_settings,
)
from ffe.api.schemas import (
    BacktestRequest,
    ForecastBenchRequest,
    JobAnswer,
    RunDefaults,
    SweepRequest,
)
from ffe.api.services import Services
from ffe.domain.errors import DataError, StrategyError

router = APIRouter(prefix="/api/v1", tags=["jobs"])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def check_strategy(name: str, params: dict[str, Any] | None = None) -> None:
    """Refuse an unknown strategy or parameter now, not when the job runs."""
    from ffe.decide.strategy import available, make_strategy

    if name not in available():
        raise StrategyError(f"unknown strategy {name!r}: use one of {', '.join(available())}")
    refuse_server_settings(name, params or {}, "params")
    make_strategy(name, params or {})  # StrategyError names a bad parameter


def check_symbols(services: Services, symbols: list[str]) -> None:
    """Refuse symbols with no stored bars now, naming those there are."""
    known = set(services.components.catalog().symbols())
    missing = [s for s in symbols if s not in known]
    if missing:
        raise DataError(
            f"no bars for {', '.join(missing)}: import them with `ffe data import` "
            f"(stored: {', '.join(sorted(known)) or 'none'})"
        )


@router.post("/backtests", status_code=status.HTTP_202_ACCEPTED)
async def submit_backtest(body: BacktestRequest, services: ServicesDep, who: Trader) -> Any:
    """Queue a backtest; poll ``GET /api/v1/jobs/{id}`` for its progress and result."""
    check_strategy(body.strategy, body.params)
    await asyncio.to_thread(check_symbols, services, body.symbols)
    return await services.submit_job("backtest", body.model_dump())


@router.get("/backtests")
async def list_backtests(
    services: ServicesDep, who: Reader, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Backtest jobs, newest first."""
    return await jobs_page(services, "backtest", limit, offset)


@router.get("/backtests/defaults", responses={200: {"model": RunDefaults}})
async def run_defaults(services: ServicesDep, who: Reader) -> Any:
    """The cash, costs, sizing and risk limits a backtest uses for what its request leaves
    out: this server's settings."""
    return services.components.run_defaults()


@router.post("/sweeps", status_code=status.HTTP_202_ACCEPTED)
async def submit_sweep(body: SweepRequest, services: ServicesDep, who: Trader) -> Any:
    """Queue a parameter sweep over ``grid``; the result's ``best`` is the best point by
    ``metric``, the largest or the smallest value as its ``direction`` (maximize or minimize)
    says."""
    from ffe.backtest.objective import direction_of

    check_strategy(body.strategy)
    refuse_server_settings(body.strategy, body.grid, "grid")
    check_params(body.strategy, list(body.grid))
    direction_of(body.metric)  # an unknown or unrankable metric is refused now
    await asyncio.to_thread(check_symbols, services, [body.symbol])
    return await services.submit_job("sweep", body.model_dump())


def check_params(strategy: str, names: list[str]) -> None:
    """Refuse parameter names the strategy does not have, naming those it has."""
    from ffe.decide.strategy import parameters

    known = parameters(strategy)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise StrategyError(
            f"strategy {strategy!r} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(known) or 'none'}"
        )


@router.get("/sweeps")
async def list_sweeps(
    services: ServicesDep, who: Reader, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Sweep jobs, newest first."""
    return await jobs_page(services, "sweep", limit, offset)


@router.post("/forecast/bench", status_code=status.HTTP_202_ACCEPTED)
async def submit_forecast_bench(
    body: ForecastBenchRequest, services: ServicesDep, who: Trader
) -> Any:
    """Queue a forecast benchmark (every model against the random walk)."""
    from ffe.forecast.models import parse_models

    parse_models(body.models)  # an unknown model is named now, not when the job runs
    await asyncio.to_thread(check_symbols, services, [body.symbol])
    return await services.submit_job("forecast_bench", body.model_dump())


@router.get("/forecast/bench", responses={404: refusal("No forecast benchmark has finished yet.")})
async def forecast_bench(services: ServicesDep, who: Reader) -> Any:
    """The newest finished forecast benchmark."""
    rows, _ = await services.jobs.list("forecast_bench", 50, 0)
    for row in rows:
        if row.status == "finished":
            return (await services.job_answers([row]))[0]
    raise not_found("no finished forecast benchmark: POST /api/v1/forecast/bench to run one")


@router.get("/jobs")
async def list_jobs(
    services: ServicesDep, who: Reader, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Every job, newest first."""
    return await jobs_page(services, None, limit, offset)


async def jobs_page(services: Services, kind: str | None, limit: int, offset: int) -> Any:
    """A page of jobs of ``kind`` (None: every kind), newest first, at most
    ``api.list_cache_s`` old (a job this process submitted or cancelled is in it)."""

    async def read() -> Any:
        rows, total = await services.jobs.list(kind, limit, offset)
        return page(await services.job_answers(rows), total, limit, offset)

    return await polled(services, f"jobs:{kind}:{limit}:{offset}", read)


@router.get("/jobs/{job_id}")
async def get_job(job_id: JobId, services: ServicesDep, who: Reader) -> Any:
    """A job's status, progress (0 to 1), error and result; ``waiting`` says "queued: no
    worker is running" while it is queued and no worker is alive to run it."""
    return (await services.job_answers([await services.jobs.get(job_id)]))[0]


@router.post(
    "/jobs/{job_id}/cancel",
    responses={
        200: {"model": JobAnswer, "description": "The job, now cancelled."},
        404: refusal("No job has this id."),
        409: refusal("The job has already ended."),
    },
)
async def cancel_job(job_id: JobId, services: ServicesDep, who: Trader) -> Any:
    """Cancel a queued job (it will not run) or a running one: its processes are ended now,
    or within a few seconds (its worker's next heartbeat) if another process runs it. The job
    stays listed, with status ``cancelled`` and who cancelled it as its error."""
    return await services.cancel_job(job_id, who.actor)  # 404, 409: by error type


@router.get("/backtests/{job_id}")
async def get_backtest(job_id: JobId, services: ServicesDep, who: Reader) -> Any:
    """A backtest job (the same as ``GET /api/v1/jobs/{job_id}``)."""
    return await get_job(job_id, services, who)
