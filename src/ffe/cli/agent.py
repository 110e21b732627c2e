"""``ffe agent``: run the trading agent, and steer it from another terminal."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import typer

from ffe.cli.common import (
    STRATEGY_HELP,
    console,
    err_console,
    format_stat,
    health_host_option,
    health_port_option,
    user_errors,
)

if TYPE_CHECKING:
    from ffe.agent.control import AgentService
    from ffe.agent.reports import AgentReport, BarReport
    from ffe.backtest.summary import RunSummary
    from ffe.cli.pace import BarPace
    from ffe.config import Settings
    from ffe.service.agents import AgentLaunch

T = TypeVar("T")


class OnStop(StrEnum):
    """What ``ffe agent run`` does after a stop command."""

    exit = "exit"
    wait = "wait"


agent_app = typer.Typer(
    help="Paper and live trading: run the agent, approve its orders, pause or stop it.",
    no_args_is_help=True,
)
ACCOUNT = typer.Option(None, "--account", "-a", help="Account [config: agent.account].")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _with_service(settings: Settings, work: Callable[[AgentService], Awaitable[T]]) -> T:
    from ffe import bootstrap
    from ffe.agent.control import AgentService

    async def main() -> T:
        db = await bootstrap.open_journal(settings)
        try:
            return await work(AgentService(db))
        finally:
            await db.dispose()

    return asyncio.run(main())


@agent_app.command("run")
def run(
    strategy: str = typer.Option("sma_cross", "--strategy", "-s", help=STRATEGY_HELP),
    symbols: list[str] = typer.Option(["SP500"], "--symbol", help="Symbol; repeat for several."),
    param: list[str] = typer.Option([], "--param", "-p", help="Strategy parameter KEY=VALUE."),
    replay: bool = typer.Option(
        True, "--replay/--poll", help="Replay stored bars, or poll the data for new ones."
    ),
    feed: str = typer.Option(
        None, "--feed", help="Trade a venue's bars as they close, like ccxt:binance."
    ),
    timeframe: str = typer.Option("1m", "--timeframe", help="The --feed's bars: 1s, 1m, 1h..."),
    speed: float = typer.Option(
        0.0, "--speed", help="Replay N bars per second (0: at once).", min=0
    ),
    start: str = typer.Option(None, "--start", help="First date (or ISO time) of the bars."),
    end: str = typer.Option(
        None, "--end", help="Last date (or ISO time); the run finishes after it."
    ),
    account: str = ACCOUNT,
    approval: str = typer.Option(None, "--approval", help="auto, manual or on_new_asset."),
    cash: float = typer.Option(None, "--cash", help="Starting cash [config: backtest.cash]."),
    commission: float = typer.Option(None, "--commission", help="Fraction of notional."),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new run; don't resume."),
    live: bool = typer.Option(False, "--live", help="Trade real money (needs agent.live too)."),
    api_url: str = typer.Option(
        None,
        "--api-url",
        help="The live feed's public REST base URL, over the configured one (data.ccxt_urls, "
        "data.alpha_vantage_url, data.oanda_url).",
    ),
    on_stop: OnStop = typer.Option(
        OnStop.exit,
        "--on-stop",
        help="After a stop command: exit, or wait (up, trading nothing) for `ffe agent "
        "resume`; with wait it also waits when it starts on an account stopped on purpose "
        "(under a supervisor that restarts it).",
        case_sensitive=False,
    ),
    health_port: int = health_port_option("agent"),
    health_host: str = health_host_option("agent"),
    as_json: bool = JSON,
) -> None:
    """Run the agent until the data ends or it is stopped (Ctrl-C stops it gracefully; with
    `--on-stop wait` a stop command leaves it up, trading nothing, until `ffe agent resume`).
    With `--feed` it trades each bar as it closes on the venue (docs/agent.md, Live feeds).

    The run is journaled like a backtest (`ffe runs show ID`); run it again to resume. Its
    decisions, fills, equity and state reach the API's live stream: through Redis when
    redis.url is set, else from its journal, about three seconds later."""
    from ffe.bootstrap.feeds import check_api_url
    from ffe.cli.common import parse_params
    from ffe.cli.pace import BarPace, resume_command
    from ffe.config import load_settings
    from ffe.service.agents import AgentLaunch

    with user_errors():
        settings = load_settings()
        launch = AgentLaunch(
            strategy,
            list(symbols),
            parse_params(param),
            speed=speed or None,
            approval=approval,
            fresh=fresh,
            account=account,
            replay=replay,
            start=start,
            end=end,
            cash=cash,
            commission=commission,
            live=live,
            feed=feed,
            timeframe=timeframe if feed else None,
            api_url=check_api_url(api_url),
        )
        chosen = settings.agent
        port = chosen.health_port if health_port is None else health_port
        probes = (health_host or chosen.health_host, port)
        pace = BarPace(_say, plain=not as_json and not err_console.is_terminal)
        stop = on_stop.value
        summaries: list[RunSummary] = []
        report = asyncio.run(
            _run(settings, launch, probes, quiet=as_json, on_stop=stop, pace=pace, told=summaries)
        )
    _print_report(report, as_json, summaries[0] if summaries else None)
    if not as_json:
        _say(f"agent: {pace.speed()}")
    if pace.interrupted:
        _say(f"stopped by Ctrl-C {pace.stopped()}; resume with: {resume_command(['--fresh'])}")


def _say(line: str) -> None:
    typer.echo(line, err=True)  # plain, flushed: a log file shows it at once


async def _run(
    settings: Settings,
    launch: AgentLaunch,
    probes: tuple[str, int],
    *,
    quiet: bool,
    on_stop: str = "exit",
    pace: BarPace | None = None,
    told: list[RunSummary] | None = None,
) -> AgentReport:
    """Run the agent ``launch`` asks for as ``ffe.service.agents`` runs every agent, its
    events through Redis when configured, with a progress bar of the replay; the summary of
    a replay that ran to its end is added to ``told``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ffe import bootstrap
    from ffe.cli.pace import BarPace
    from ffe.obs.metrics import Metrics
    from ffe.service.agents import AgentLauncher, AgentSession
    from ffe.service.supervisor import AgentSupervisor, serve_supervised

    components = bootstrap.components(settings)
    kv = components.kv_backends()
    try:
        publisher = bootstrap.agent_publisher(kv, in_process=False)
        launcher = AgentLauncher(components.agent, publisher, Metrics())
        supervisor = AgentSupervisor(launcher, components.catalog(), settings.agent.account)
        loop = asyncio.get_running_loop()
        pace = pace or BarPace(_say, plain=False)

        def on_signal(sig: signal.Signals) -> None:
            pace.interrupted = pace.interrupted or sig == signal.SIGINT
            supervisor.request_stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        columns = (TextColumn("[bold]agent"), BarColumn(), MofNCompleteColumn(), TextColumn("bars"))
        with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
            task = progress.add_task("replay", total=None)

            def attach(session: AgentSession) -> None:  # the first agent and each restart's
                agent = session.agent
                agent.on_stop = on_stop
                total = agent.market.n_bars if not agent.clock.live else None
                progress.update(task, total=total)
                pace.start(total)

                def on_bar(bar: BarReport) -> None:
                    progress.update(task, completed=bar.bar + 1)
                    pace.bar(bar)

                agent.watch(on_bar=on_bar)

            supervisor.on_session = attach
            host, port = probes
            report = await serve_supervised(supervisor, launch, health_host=host, health_port=port)
            if told is not None and supervisor.summary is not None:
                told.append(supervisor.summary)
            return report
    finally:
        await kv.close()


def _print_report(report: AgentReport, as_json: bool, summary: RunSummary | None = None) -> None:
    data = {
        "run_id": report.run_id,
        "status": report.status,
        "resumed": report.resumed,
        "first_bar": report.first_bar,
        "bars": report.bars,
        "reconciliation": report.reconciliation,
        "stats": report.stats,
        "summary": None if summary is None else summary.as_dict(),
    }
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    if not report.run_id:  # ended before it opened a run (a feed down from the start)
        console.print(f"{report.status} before a run opened: nothing traded")
        return
    verb = "resumed" if report.resumed else "started"
    console.print(
        f"run [bold]{report.run_id[:8]}[/bold] {verb} at bar {report.first_bar}, stepped "
        f"{report.bars} bars: {report.status} (`ffe runs show {report.run_id[:8]}`)"
    )
    if not report.reconciliation.get("consistent", True):
        err_console.print(f"[yellow]reconciliation:[/yellow] {report.reconciliation}")
    for name in ("total_return", "cagr", "sharpe", "max_drawdown", "n_trades", "llm_failures"):
        if report.stats and name in report.stats:
            console.print(f"  {name:<14} {format_stat(name, report.stats[name])}")
    for line in [] if summary is None else summary.lines():
        typer.echo(line)  # plain lines, whether or not a terminal reads them


@agent_app.command("status")
def status(account: str = ACCOUNT, as_json: bool = JSON) -> None:
    """Every account's agent: running (a live agent holds its lease) or not, paused or halted,
    the last bar it finished."""
    from ffe.config import load_settings

    with user_errors():
        found = _with_service(load_settings(), lambda s: s.status(account))
    rows = [s.as_dict() for s in found]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no agent has run yet: start one with `ffe agent run`")
    for row in rows:
        running = "running" if row["running"] else "not running"
        if row["running"] and row["status"] == "stopped":  # `--on-stop wait`, stopped
            running = "up, waiting for `ffe agent resume`"
        console.print(
            f"[bold]{row['account']}[/bold] {row['status']} ({running}) run "
            f"{(row['run_id'] or '-')[:8]} last bar {row['last_bar_time'] or '-'}"
            + (f" halted: {row['halted_reason']}" if row["halted_reason"] else "")
            + (f" LLM failures: {row['llm_failures']}" if row["llm_failures"] else "")
        )


def _command(name: str, command: str, doc: str) -> None:
    def send(account: str = ACCOUNT) -> None:
        from ffe.config import load_settings

        with user_errors():
            settings = load_settings()
            target = account or settings.agent.account
            sent = _with_service(settings, lambda s: s.command(target, command))
        console.print(sent.message)

    send.__doc__ = doc
    agent_app.command(name)(send)


_command("pause", "pause", "Stop deciding until resumed (orders already sent still fill).")
_command(
    "resume",
    "resume",
    "Go on deciding after a pause, or after a stop of an agent run with `--on-stop wait`.",
)
_command(
    "stop",
    "stop",
    "Stop the agent after its current step; run it again to resume (one run with "
    "`--on-stop wait` stays up, trading nothing, until `ffe agent resume`).",
)
_command(
    "emergency-stop",
    "emergency_stop",
    "Cancel open orders, flatten every position, and trade nothing more until reset.",
)
_command("reset", "reset", "Lift an emergency stop or a risk halt.")


@agent_app.command("close")
def close(
    symbol: str = typer.Argument(..., help="The position to close, e.g. SP500."),
    quantity: float | None = typer.Option(
        None, "--quantity", help="The position you expect (signed); refused if it differs."
    ),
    account: str = ACCOUNT,
) -> None:
    """Close one position: the running agent orders it closed at market through its risk
    checks and approval policy."""
    from ffe.config import load_settings

    async def ask(service: AgentService) -> dict[str, object] | None:
        command_id = await service.close_position(target, symbol, quantity, "cli")
        return await service.close_outcome(command_id, 10.0)

    with user_errors():
        settings = load_settings()
        target = account or settings.agent.account
        outcome = _with_service(settings, ask)
        if outcome is not None and outcome["status"] in ("denied", "refused"):
            from ffe.domain.errors import ConflictError

            raise ConflictError(str(outcome["detail"]))
    if outcome is None:
        console.print(f"sent to the agent on {target}, which has not answered yet")
    else:
        console.print(str(outcome["detail"]))


@agent_app.command("approvals")
def approvals(account: str = ACCOUNT, as_json: bool = JSON) -> None:
    """Orders waiting for approval."""
    from ffe.config import load_settings

    with user_errors():
        waiting = _with_service(load_settings(), lambda s: s.approvals(account))
    rows = [
        {
            "id": a.id,
            "account": a.account,
            "symbol": a.symbol,
            "quantity": a.quantity,
            "price": a.reference_price,
            "time": a.time.isoformat(),
            "expires_at": a.expires_at.isoformat(),
            "rationale": a.rationale,
        }
        for a in waiting
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    if not rows:
        console.print("no orders are waiting for approval")
    for row in rows:
        console.print(
            f"[bold]{row['id']}[/bold] {row['account']} {row['symbol']} {row['quantity']:+g} @ "
            f"{row['price']:.6g} (bar {row['time']}, expires {row['expires_at']}) "
            f"{row['rationale'] or ''}"
        )


@agent_app.command("approve")
def approve(approval_id: int = typer.Argument(..., help="Id from `ffe agent approvals`.")) -> None:
    """Approve a waiting order: the agent checks risk again and sends it."""
    from ffe.config import load_settings

    with user_errors():
        _with_service(load_settings(), lambda s: s.approve(approval_id))
    console.print(f"approved {approval_id}")


@agent_app.command("reject")
def reject(approval_id: int = typer.Argument(..., help="Id from `ffe agent approvals`.")) -> None:
    """Reject a waiting order: it is not sent."""
    from ffe.config import load_settings

    with user_errors():
        _with_service(load_settings(), lambda s: s.reject(approval_id))
    console.print(f"rejected {approval_id}")
