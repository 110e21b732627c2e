"""The journal's runs (backtests, paper and live sessions), strategies, market data and the
analysis endpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import HTMLResponse, JSONResponse

from ffe.api import account_schemas, queries, run_schemas, schemas
from ffe.api.deps import Admin, Reader, ServicesDep
from ffe.api.routes.common import Limit, Offset, refusal
from ffe.service import benchmark, runs
from ffe.store.repositories import unit_of_work

router = APIRouter(prefix="/api/v1", tags=["runs"])
RunRef = Annotated[str, Path(pattern=r"^[0-9a-f]{4,32}$", description="a run id or its prefix")]
SymbolPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


@router.get("/runs", responses={200: {"model": schemas.RunPage}})
async def list_runs(
    services: ServicesDep,
    who: Reader,
    kind: Literal["backtest", "paper", "live"] | None = None,
    strategy: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """Runs newest first."""
    from ffe.runs.journal import run_summary

    found = await runs.list_runs(
        services.db, kind=kind, strategy=strategy, limit=limit + 1, offset=offset
    )
    items = [run_summary(r) for r in found[:limit]]
    total = offset + len(found)  # a lower bound; cheap, and enough to page on
    return queries.page(items, total, limit, offset)


@router.get("/runs/compare", responses={404: refusal("No run has one of these ids")})
async def compare(
    services: ServicesDep,
    who: Reader,
    a: Annotated[str, Query(pattern=r"^[0-9a-f]{4,32}$")],
    b: Annotated[str, Query(pattern=r"^[0-9a-f]{4,32}$")],
) -> Any:
    """Two runs' settings and statistics side by side."""
    return (await runs.compare(services.db, a, b))[2]


@router.get("/runs/{run_id}", responses={200: {"model": schemas.RunSummary}})
async def get_run(run_id: RunRef, services: ServicesDep, who: Reader) -> Any:
    """One run: what ran, on what, its status and statistics."""
    from ffe.runs.journal import run_summary

    return run_summary(await runs.get_run(services.db, run_id))


@router.get("/runs/{run_id}/equity", responses={200: {"model": account_schemas.EquityCurve}})
async def run_equity(
    run_id: RunRef,
    services: ServicesDep,
    who: Reader,
    limit: Annotated[int, Query(ge=2, le=100_000)] = 2000,
) -> Any:
    """A run's equity curve and drawdown, thinned to ``limit`` points, with buy and hold."""
    run = await runs.get_run(services.db, run_id)
    return await benchmark.equity_curve(services.db, services.components.catalog(), run.id, limit)


@router.get(
    "/runs/{run_id}/trades",
    responses={200: {"model": run_schemas.RoundTripPage}, 404: refusal("No run has this id")},
)
async def run_trades(
    run_id: RunRef, services: ServicesDep, who: Reader, limit: Limit = 100, offset: Offset = 0
) -> Any:
    """A run's round trips (flat to flat, open ones valued at their last mark), oldest
    entry first, derived from its fills (``ffe.portfolio.trades``)."""
    _, trips, source = await runs.round_trips(services.db, run_id)
    items = [queries.round_trip_dict(t) for t in trips[offset : offset + limit]]
    return queries.page(items, len(trips), limit, offset) | {"source": source}


@router.get(
    "/runs/{run_id}/returns",
    responses={200: {"model": run_schemas.CalendarReturns}, 404: refusal("No run has this id")},
)
async def run_returns(run_id: RunRef, services: ServicesDep, who: Reader) -> Any:
    """A run's returns by UTC day, month and year (each period's last equity over the last
    of the period before), for a calendar heatmap."""
    run, found = await runs.calendar(services.db, run_id)
    periods = {
        name: [{"period": p.period, "value": queries.finite(p.value)} for p in rows]
        for name, rows in (("daily", found.daily), ("monthly", found.monthly),
                           ("yearly", found.yearly))
    }  # fmt: skip
    return {"run_id": run.id, **periods}


@router.get(
    "/runs/{run_id}/bars",
    responses={
        404: refusal("No run has this id, it did not trade the symbol, or its bars are gone")
    },
)
async def run_bars(
    run_id: RunRef,
    services: ServicesDep,
    who: Reader,
    symbol: Annotated[str | None, Query(max_length=64, description="default: its first")] = None,
    limit: Annotated[int, Query(ge=1, le=20_000)] = 5000,
) -> Any:
    """The bars one of the run's symbols had over the run (its last ``limit``), to draw its
    trades on: the shape of ``/market/{symbol}/bars``."""
    import asyncio

    run = await runs.get_run(services.db, run_id)
    chosen = symbol or (run.symbols[0] if run.symbols else "")
    if chosen not in run.symbols:  # a well-formed name: the run has no bars of it (404)
        from ffe.domain.errors import NotFoundError

        named = ", ".join(run.symbols[:5]) + (", …" if len(run.symbols) > 5 else "")
        raise NotFoundError(f"run {run_id} did not trade {symbol!r}: its symbols are {named}")
    window = (run.config.get("first_bar"), run.config.get("last_bar"))
    return await asyncio.to_thread(_bars, services, chosen, limit, window)


@router.get(
    "/runs/{run_id}/report",
    response_class=HTMLResponse,
    responses={409: refusal("The run has not finished: no report yet")},
)
async def run_report(run_id: RunRef, services: ServicesDep, who: Reader) -> Any:
    """The run's HTML report (equity, drawdown, trades), as ``ffe runs report`` writes it."""
    from ffe.api.headers import REPORT_CSP

    html = await runs.report_html(services.db, run_id, standalone=True)
    return HTMLResponse(html, headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/strategies")
async def strategies(who: Reader) -> Any:
    """Strategy names and the parameters a request may set, with their defaults; the
    parameters only the server's settings set (``settings``: each with its setting); where
    each comes from (``source``: built-in, file or package); and the installed entry points
    never used because a built-in has their name (``shadowed``). A package's strategy that
    fails to load is listed with its ``error`` (and no parameters), the others as ever."""
    from ffe.decide.strategy import available, shadowed

    return {"items": [_strategy_item(name) for name in available()], "shadowed": shadowed()}


def _strategy_item(name: str) -> dict[str, Any]:
    from ffe.decide.strategy import caller_parameters, settings_only, source
    from ffe.domain.errors import StrategyError

    found: dict[str, Any]
    try:
        found = {"params": _plain(caller_parameters(name)), "settings": settings_only(name)}
    except StrategyError as exc:  # a broken package: say so, and list the rest
        found = {"params": {}, "settings": {}, "error": str(exc)}
    return {"name": name, **found, **source(name)}


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool) or v is None else str(v)
        for k, v in params.items()
    }


@router.get("/market/symbols")
async def symbols(services: ServicesDep, who: Reader) -> Any:
    """The symbols with stored bars."""
    import asyncio

    entries = await asyncio.to_thread(services.components.catalog().list_entries)
    items = [
        {
            "symbol": e.symbol,
            "timeframe": str(e.timeframe),
            "first": queries.iso(e.first),
            "last": queries.iso(e.last),
            "bars": e.count,
            "source": e.source,
        }
        for e in entries
    ]
    return {"items": items}


@router.get("/market/{symbol}/bars")
async def bars(
    symbol: SymbolPath,
    services: ServicesDep,
    who: Reader,
    limit: Annotated[int, Query(ge=1, le=20_000)] = 500,
) -> Any:
    """The newest ``limit`` bars of a symbol."""
    key = f"bars:{symbol}:{limit}"
    from ffe.kv.cache import get_json, set_json

    cached = await get_json(services.kv.cache, key)
    if cached is not None:
        return cached
    import asyncio

    found = await asyncio.to_thread(_bars, services, symbol, limit)
    await set_json(services.kv.cache, key, found, 60.0)
    return found


def _bars(
    services: Any, symbol: str, limit: int, window: tuple[str | None, str | None] = (None, None)
) -> dict[str, Any]:
    from ffe.data import load_market
    from ffe.domain.market import utc_datetime

    start, end = window
    market = load_market(services.components.catalog(), [symbol], start=start, end=end)
    first = max(0, market.n_bars - limit)
    times = market.times.view("int64")
    rows = [
        {
            "time": utc_datetime(int(times[i])).isoformat(),
            "open": queries.finite(market.open[i, 0]),
            "high": queries.finite(market.high[i, 0]),
            "low": queries.finite(market.low[i, 0]),
            "close": queries.finite(market.close[i, 0]),
            "volume": queries.finite(market.volume[i, 0]),
        }
        for i in range(first, market.n_bars)
    ]
    return {"symbol": symbol, "timeframe": str(market.timeframe), "bars": rows}


_COMPUTING = {
    "description": "Being computed: ask again after Retry-After seconds",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status", "symbol", "detail"],
                "properties": {
                    "status": {"const": "computing"},
                    "symbol": {"type": "string"},
                    "detail": {"type": "string"},
                },
            }
        }
    },
}


@router.get(
    "/analysis/{symbol}",
    responses={
        202: _COMPUTING,
        404: refusal("No bars for the symbol, or it is not one the pre-compute analyses"),
    },
)
async def analysis(symbol: SymbolPath, services: ServicesDep, who: Reader) -> Any:
    """Latest forecast with its bands, indicators and the decision the ensemble would make,
    from the cache the pre-compute fills (``ffe precompute``, or the API itself under
    ``ffe run``). 202 with Retry-After while it is not cached yet."""
    from ffe.service.analysis import Pending

    found = await services.analysis.get(symbol)
    if isinstance(found, Pending):
        return JSONResponse(
            {"status": "computing", "symbol": symbol, "detail": found.detail},
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Retry-After": str(found.retry_after_s)},
        )
    return found


@router.get("/audit")
async def audit(services: ServicesDep, who: Admin, limit: Limit = 100) -> Any:
    """Who did what: control actions, approvals, keys, logins (newest first)."""
    async with unit_of_work(services.db) as uow:
        entries = await uow.audit.recent(limit)
    items = [
        {
            "id": e.id,
            "time": queries.iso(e.time),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "details": e.details,
        }
        for e in entries
    ]
    return {"items": items}
