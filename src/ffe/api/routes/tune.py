"""Tuning studies: submitted and read as jobs (``POST /api/v1/tune``), and the studies the
storage holds with their reports, for the dashboard's Optimization page."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from fastapi.responses import HTMLResponse

from ffe.api.deps import Reader, ServicesDep, Trader
from ffe.api.routes.common import Limit, Offset, refusal, refuse_server_settings
from ffe.api.routes.jobs import check_params, check_strategy, check_symbols, jobs_page
from ffe.api.schemas import TuneRequest
from ffe.domain.errors import ConfigError

router = APIRouter(prefix="/api/v1", tags=["tune"])
StudyName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


@router.post("/tune", status_code=status.HTTP_202_ACCEPTED)
async def submit_study(body: TuneRequest, services: ServicesDep, who: Trader) -> Any:
    """Queue a study; poll ``GET /api/v1/jobs/{id}``: its result is the best trial with its
    out-of-sample value, the holdout's, the deflated Sharpe ratio and the edge warnings. The
    study is named after the job unless ``study`` names it (an existing one is resumed)."""
    check_strategy(body.strategy)
    refuse_server_settings(body.strategy, body.params, "params")
    check_params(body.strategy, list(body.params))
    _check_study(body, services.components.tune.max_trials)
    await asyncio.to_thread(check_symbols, services, [body.symbol])
    return await services.submit_job("tune", body.model_dump())


def _check_study(body: TuneRequest, max_trials: int) -> None:
    """Refuse now what the study would refuse before its first trial."""
    from ffe.backtest.objective import direction_of
    from ffe.backtest.walkforward import WalkForwardSpec
    from ffe.tune.space import grid_size, parse_space

    if body.trials > max_trials:
        raise ConfigError(
            f"a study submitted here runs at most {max_trials:,} trials (tune.max_trials); "
            f"asked for {body.trials:,}"
        )
    direction_of(body.metric)
    WalkForwardSpec.parse(body.walk_forward)
    space = parse_space([f"{name}={text}" for name, text in body.params.items()])
    if body.sampler == "grid":
        grid_size(space)
    if body.holdout >= 1 and not body.holdout.is_integer():
        raise ConfigError("holdout must be a fraction below 1 or a whole number of bars")


@router.get("/tune")
async def list_study_jobs(
    services: ServicesDep, who: Reader, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Tuning jobs, newest first."""
    return await jobs_page(services, "tune", limit, offset)


@router.get("/tune/studies")
async def list_studies(services: ServicesDep, who: Reader) -> Any:
    """Every stored study (from the API, the CLI or Python), newest first: its setup, trials
    by state, and best value and parameters."""
    from ffe.service import tuning

    found = await asyncio.to_thread(tuning.studies, services.components)
    return {"items": [summary.to_dict() for summary in found]}


@router.get("/tune/studies/{name}", responses={404: refusal("No study has this name.")})
async def show_study(name: StudyName, services: ServicesDep, who: Reader) -> Any:
    """A study: its setup, outcome (best, holdout, deflated Sharpe ratio, edges) and
    trials."""
    from ffe.service import tuning

    summary, trials = await asyncio.to_thread(tuning.show, services.components, name)
    return {**summary.to_dict(), "trial_list": trials}


@router.get(
    "/tune/studies/{name}/report",
    response_class=HTMLResponse,
    responses={404: refusal("No study has this name.")},
)
async def study_report(name: StudyName, services: ServicesDep, who: Reader) -> Any:
    """The study's HTML report (Optuna's plots), as ``ffe tune show NAME --report`` writes
    it."""
    from ffe.api.headers import REPORT_CSP
    from ffe.service import tuning

    html = await asyncio.to_thread(tuning.report, services.components, name, standalone=True)
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})
