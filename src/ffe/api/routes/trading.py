"""The account: status, portfolio, positions, orders, fills, equity, decisions, approvals,
and the agent's controls."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from ffe.api import account_schemas, queries, schemas
from ffe.api.deps import Reader, ServicesDep, Trader, authenticate, checks_scope
from ffe.api.routes.common import (
    Account,
    Limit,
    Offset,
    account_of,
    not_found,
    polled,
    refusal,
    refuse_server_settings,
)
from ffe.api.schemas import AgentCommandBody, AgentStart
from ffe.api.services import Services
from ffe.api.trades import live_trades
from ffe.domain.errors import FfeError
from ffe.service import benchmark

router = APIRouter(prefix="/api/v1", tags=["trading"])


@router.get("/status", responses={200: {"model": schemas.Status}})
async def get_status(services: ServicesDep, who: Reader) -> Any:
    """Version, mode, agents and jobs at a glance."""
    return await services.status()


# The hottest route (dashboards and bots poll it) declares no FastAPI parameters: each one
# costs a dependency resolution per request, which was a fifth of this route's time. It
# checks the caller and reads ``account`` itself, and the spec below (and the mark
# ``checks_scope``, which the spec's security is built from) says what it takes.
_ACCOUNT_SPEC = {
    "name": "account",
    "in": "query",
    "required": False,
    "description": "default: agent.account",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}
_INVALID_SPEC = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


@router.get(
    "/portfolio",
    openapi_extra={"parameters": [_ACCOUNT_SPEC]},
    responses={200: {"model": account_schemas.Portfolio}, 422: _INVALID_SPEC},
)
@checks_scope("read")
async def portfolio(request: Request) -> Any:
    """Cash, equity, P&L, drawdown and open positions of the account."""
    await authenticate(request, "read")
    services: Services = request.app.state.services
    chosen = account_of(services, _account_param(request))
    if not services.supervisor.trades(chosen):
        # The journal's answer is cached as JSON: sent as it is, not decoded and re-encoded.
        return Response(await _journal_portfolio(services, chosen), media_type="application/json")
    return await _portfolio(services, chosen)


def _account_param(request: Request) -> str | None:
    """``?account=``, checked as ``Account`` would be."""
    account = request.query_params.get("account")
    if account is not None and not 1 <= len(account) <= 64:
        short = not account
        bound = "least 1 character" if short else "most 64 characters"
        problem = {
            "type": "string_too_short" if short else "string_too_long",
            "loc": ("query", "account"),
            "msg": f"String should have at {bound}",
            "input": account,
        }
        raise RequestValidationError([problem])
    return account


async def _portfolio(services: Services, account: str) -> dict[str, Any]:
    supervisor = services.supervisor
    if supervisor.trades(account):
        live = queries.live_portfolio(
            supervisor.snapshot(), supervisor.peak, supervisor.max_drawdown
        )
        if live is not None:
            return live
    return dict(json.loads(await _journal_portfolio(services, account)))


async def _journal_portfolio(services: Services, account: str) -> bytes:
    """The account's portfolio from the journal as JSON, read at most once per
    ``api.list_cache_s`` per account (shared by every worker when Redis is configured):
    dashboards and bots poll it."""

    async def read() -> bytes:
        found = await queries.journal_portfolio(services.db, account, services.options.data_dir)
        return json.dumps(found, separators=(",", ":")).encode()

    return await services.fresh(f"portfolio:{account}", read)


@router.get("/positions", responses={200: {"model": account_schemas.Positions}})
async def positions(services: ServicesDep, who: Reader, account: Account = None) -> Any:
    """The account's open positions."""
    found = await _portfolio(services, account_of(services, account))
    return {"items": found["positions"], "as_of": found["as_of"]}


async def _run_of(services: Services, account: str | None, run_id: str | None) -> str | None:
    return run_id or await queries.account_run(services.db, account_of(services, account))


RunId = Annotated[
    str | None, Query(pattern=r"^[0-9a-f]{4,32}$", description="default: the account's")
]
Symbol = Annotated[str | None, Query(min_length=1, max_length=64)]


@router.get("/orders", responses={200: {"model": account_schemas.OrderPage}})
async def orders(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    symbol: Symbol = None,
    order_status: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """The account's orders, newest first."""

    async def read() -> Any:
        run = await _run_of(services, account, run_id)
        return await queries.orders_page(services.db, run, symbol, order_status, limit, offset)

    key = f"orders:{account_of(services, account)}:{run_id}:{symbol}:{order_status}"
    return await polled(services, f"{key}:{limit}:{offset}", read)


@router.get("/fills", responses={200: {"model": account_schemas.FillPage}})
async def fills(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    symbol: Symbol = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """The account's fills, newest first."""

    async def read() -> Any:
        run = await _run_of(services, account, run_id)
        return await queries.fills_page(services.db, run, symbol, limit, offset)

    key = f"fills:{account_of(services, account)}:{run_id}:{symbol}:{limit}:{offset}"
    return await polled(services, key, read)


@router.get("/trades", responses={200: {"model": account_schemas.Trades}})
async def trades(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    symbol: Symbol = None,
    limit: Limit = 50,
) -> Any:
    """The account's round trips from its fills: closed ones with their P&L and duration,
    open ones marked at the portfolio's prices (unrealised P&L); newest first."""
    chosen = account_of(services, account)

    async def read() -> Any:
        portfolio = await _portfolio(services, chosen)
        run = run_id or portfolio["run_id"]
        same = run == portfolio["run_id"]  # another run's open trades have no mark here
        marks = {
            p["symbol"]: p["mark_price"]
            for p in portfolio["positions"]
            if same and p["mark_price"] is not None
        }
        stamp = portfolio["as_of"] if same else None
        as_of = datetime.fromisoformat(stamp) if stamp else None
        return await live_trades(services.db, run, symbol, marks, as_of, limit)

    return await polled(services, f"trades:{chosen}:{run_id}:{symbol}:{limit}", read)


@router.get("/equity", responses={200: {"model": account_schemas.EquityCurve}})
async def equity(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    limit: Annotated[int, Query(ge=2, le=100_000)] = 2000,
) -> Any:
    """The equity curve and its drawdown, thinned to ``limit`` points, with buy and hold."""
    run = await _run_of(services, account, run_id)
    if run is None:
        return {"run_id": None, "points": [], "benchmark": None}
    return await benchmark.equity_curve(services.db, services.components.catalog(), run, limit)


@router.get("/decisions", responses={200: {"model": schemas.DecisionPage}})
async def decisions(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    symbol: Symbol = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """Decisions newest first, with rationale, model votes and outcome once known."""

    async def read() -> Any:
        run = await _run_of(services, account, run_id)
        if run is None:
            return queries.page([], 0, limit, offset)
        return await queries.decisions(services.db, run, symbol, limit, offset)

    key = f"decisions:{account_of(services, account)}:{run_id}:{symbol}:{limit}:{offset}"
    return await polled(services, key, read)


@router.get("/decisions/calibration", responses={404: refusal("No run yet, or none with this id")})
async def calibration(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    run_id: RunId = None,
    bins: Annotated[int, Query(ge=2, le=50)] = 10,
) -> Any:
    """How often decisions of each confidence were right."""
    from ffe.runs.calibration import load_calibration

    run = await _run_of(services, account, run_id)
    if run is None:
        raise not_found("no run yet: start the agent or give run_id")
    try:
        found = (await load_calibration(services.db, run, bins)).to_dict()
    except FfeError as exc:  # no decisions, or none resolved yet: an empty chart, and why
        return {
            "run_id": run,
            "n": 0,
            "ece": None,
            "brier": None,
            "bins": [],
            "note": str(exc),
            "skill": None,
            "raw_skill": None,
        }
    stated = found["stated"] or {"bins": [], "ece": None, "brier": None}
    rows = [
        {
            "lo": b["low"],
            "hi": b["high"],
            **{k: v for k, v in b.items() if k not in ("low", "high")},
        }
        for b in stated["bins"]
    ]
    return {
        "run_id": found["run_id"],
        "n": found["resolved"],
        "decisions": found["decisions"],
        "ece": queries.finite(stated["ece"]),
        "brier": queries.finite(stated["brier"]),
        "bins": rows,
        "skill": _skill(found["stated_skill"]),
        "raw_skill": _skill(found["raw_skill"]),
    }


def _skill(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """A confidence's skill figures (``ffe.decide.skill``), NaN as null."""
    if found is None:
        return None
    return {k: queries.finite(v) if isinstance(v, float) else v for k, v in found.items()}


@router.get("/approvals", responses={200: {"model": schemas.ApprovalPage}})
async def approvals(
    services: ServicesDep,
    who: Reader,
    account: Account = None,
    approval_status: Annotated[
        Literal["pending", "approved", "rejected", "expired", "sent"] | None,
        Query(alias="status"),
    ] = "pending",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Any:
    """Orders waiting for a person (``status=pending``), or decided ones."""
    return await queries.approvals_page(services.db, account, approval_status, limit, offset)


ApprovalId = Annotated[int, Path(ge=1, le=2**62)]


# A state-dependent refusal: the agent (or the run an approval belongs to) is not running.
_NOT_RUNNING = refusal("No agent is running to carry it out")
_DECIDED = refusal("The approval was already decided or has expired")


@router.post(
    "/approvals/{approval_id}/approve",
    responses={
        200: {"model": schemas.Approval},
        409: refusal("No agent trades the approval's run, or it was already decided or expired"),
    },
)
async def approve(approval_id: ApprovalId, services: ServicesDep, who: Trader) -> Any:
    """Send the order (it passes the risk checks again first); 409 when no agent trades the
    approval's run any more."""
    row = await services.agents.approve(approval_id, who.actor)
    await services.publish("approval", queries.approval_dict(row))
    return queries.approval_dict(row)


@router.post(
    "/approvals/{approval_id}/reject", responses={200: {"model": schemas.Approval}, 409: _DECIDED}
)
async def reject(approval_id: ApprovalId, services: ServicesDep, who: Trader) -> Any:
    """Drop a waiting order."""
    row = await services.agents.reject(approval_id, who.actor)
    await services.publish("approval", queries.approval_dict(row))
    return queries.approval_dict(row)


PositionSymbol = Annotated[str, Path(min_length=1, max_length=64)]
# How long a close request waits for the agent (which polls for commands every quarter second)
# to say what it did; past it, the answer is 202 "queued".
CLOSE_WAIT_S = 10.0
_CLOSE_WAITS = "It waits for approval, or the agent has not answered yet"
_CLOSE_REFUSED = (
    "No agent runs, nothing to close, the position changed since it was confirmed, or the "
    "risk engine denied the order"
)


@router.post(
    "/positions/{symbol}/close",
    responses={
        200: {"model": schemas.PositionClosed, "description": "The closing order was sent"},
        202: {"model": schemas.PositionClosed, "description": _CLOSE_WAITS},
        409: refusal(_CLOSE_REFUSED),
    },
)
async def close_position(
    symbol: PositionSymbol,
    services: ServicesDep,
    who: Trader,
    response: Response,
    body: Annotated[schemas.PositionCloseBody | None, Body()] = None,
) -> Any:
    """Close one position: the running agent orders it closed at market through its risk
    engine and approval policy (never straight to the broker). Audited as ``position.close``."""
    account = account_of(services, body.account if body else None)
    confirmed = body.quantity if body else None
    command_id = await services.agents.close_position(account, symbol, confirmed, who.actor)
    outcome = await services.agents.close_outcome(command_id, CLOSE_WAIT_S)
    await services.written("portfolio", "orders")
    event = {"kind": "command", "command": "close", "account": account, "symbol": symbol}
    await services.publish("event", event)
    if outcome is None:
        response.status_code = status.HTTP_202_ACCEPTED
        silent = f"sent to the agent on {account}, which has not answered yet: see its orders"
        outcome = {"status": "queued", "detail": f"{silent} and approvals"}
    elif outcome["status"] in ("denied", "refused"):
        raise HTTPException(status.HTTP_409_CONFLICT, outcome["detail"])
    approval = None
    if outcome["status"] == "waiting":
        response.status_code = status.HTTP_202_ACCEPTED
        approval = await queries.approval_of(services.db, outcome["client_order_id"])
        if approval is not None:
            await services.publish("approval", approval)
    return {
        "status": outcome["status"],
        "detail": outcome["detail"],
        "account": account,
        "symbol": symbol,
        "quantity": outcome.get("quantity"),
        "client_order_id": outcome.get("client_order_id"),
        "command_id": command_id,
        "approval": approval,
    }


@router.get("/agent", responses={200: {"model": schemas.Agents}})
async def agent(services: ServicesDep, who: Reader) -> Any:
    """Every account's agent, and the one this process runs."""
    states = [s.as_dict() for s in await services.agents.status()]
    return {"agents": states, "supervised": services.supervisor.describe()}


@router.post(
    "/agent/start",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: refusal("An agent already runs here: stop it first")},
)
async def start_agent(body: AgentStart, services: ServicesDep, who: Trader) -> Any:
    """Start the paper agent in this process, replaying stored bars."""
    from ffe.service.agents import AgentLaunch

    if body.params:  # before anything starts: a host, a path or a pool size is not the caller's
        refuse_server_settings(body.strategy, body.params, "params")
    launch = AgentLaunch(
        strategy=body.strategy,
        symbols=body.symbols,
        params=dict(body.params),
        speed=body.speed or None,
        approval=body.approval,
        fresh=body.fresh,
    )
    await services.supervisor.start(launch)
    async with _audit(services) as audit:
        await audit.record(who.actor, "agent.start", launch.account, body.model_dump())
    return {"supervised": services.supervisor.describe()}


Command = Literal["pause", "resume", "stop", "emergency-stop", "reset"]


@router.post("/agent/{command}", responses={409: _NOT_RUNNING})
async def command(
    command: Command,
    services: ServicesDep,
    who: Trader,
    body: Annotated[AgentCommandBody | None, Body()] = None,
) -> Any:
    """Pause, resume, stop, emergency-stop (cancel, flatten, halt) or reset the agent (reset
    lifts an emergency stop, and needs the admin scope). With no agent running, emergency-stop
    and reset change the account's state at once (``queued`` false) and the others get 409."""
    account = account_of(services, body.account if body else None)
    name = command.replace("-", "_")
    if name == "reset" and not who.allows("admin"):
        # Lifting an emergency stop is for whoever may change the rules, not every trader.
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reset needs the 'admin' scope")
    sent = await services.agents.command(account, name, who.actor)  # 409: ConflictError
    await services.written("status")
    await services.publish("event", {"kind": "command", "command": name, "account": account})
    services.publish_state_soon(account, (0.0,) if not sent.queued else (0.5, 2.0))
    return {
        "command_id": sent.command_id,
        "account": account,
        "command": name,
        "queued": sent.queued,
        "detail": sent.message,
    }


def _audit(services: Services) -> Any:
    from contextlib import asynccontextmanager

    from ffe.store.repositories import unit_of_work

    @asynccontextmanager
    async def audit() -> Any:
        async with unit_of_work(services.db) as uow:
            yield uow.audit

    return audit()
