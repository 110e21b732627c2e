"""``ffe run`` (API, dashboard, jobs and the paper agent in one process), ``ffe serve`` (the
API alone, for several workers behind a load balancer; jobs go to ``ffe worker``), ``ffe
health``, ``ffe keys`` and ``ffe users``."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import STRATEGY_HELP, console, err_console, user_errors

if TYPE_CHECKING:
    from ffe.config import Settings

keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users: create, list, passwd.", no_args_is_help=True)


def run_command(
    host: str = typer.Option(None, "--host", help="Address to listen on [config: api.host]."),
    port: int = typer.Option(None, "--port", help="Port [config: api.port].", min=1, max=65535),
    strategy: str = typer.Option(
        None,
        "--strategy",
        "-s",
        help="The agent's strategy (without one, and without --param: the demo's, "
        "docs/configuration.md): " + STRATEGY_HELP,
    ),
    symbols: list[str] = typer.Option(None, "--symbol", help="Symbol; repeat for several."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Strategy parameter KEY=VALUE."),
    start: str = typer.Option(
        None, "--start", help="Replay from this date (YYYY-MM-DD); the demo's: 2010-01-01."
    ),
    speed: float = typer.Option(20.0, "--speed", help="Replay N bars per second.", min=0),
    no_agent: bool = typer.Option(False, "--no-agent", help="Start the API and dashboard only."),
    new: bool = typer.Option(
        False, "--new", help="Start a new agent run instead of resuming the last one."
    ),
) -> None:
    """Start everything on embedded defaults: the API, the dashboard, the jobs and the paper
    agent replaying the bundled S&P 500 with the demo's strategy (chosen on 1999-2009, replayed
    from 2010). Prints the URL once the server answers, how to log in the first time, and which
    run the agent resumes (`--new` starts a new one)."""
    with user_errors():
        settings = _with_precompute(_settings(host, port, jobs=True))  # one process: all
        launch = None
        if not no_agent:
            launch = _launch(strategy, symbols, param, start, speed or None, fresh=new)
        _serve(settings, launch, worker_kind="run")


def _launch(
    strategy: str | None,
    symbols: list[str] | None,
    param: list[str] | None,
    start: str | None,
    speed: float | None,
    *,
    fresh: bool,
) -> Any:
    """The agent ``ffe run`` starts: the demo's (``ffe.domain.defaults.DEMO``) when neither a
    strategy nor parameters are given, otherwise what was asked."""
    from ffe.cli.common import parse_params
    from ffe.domain.defaults import DEMO
    from ffe.service.agents import AgentLaunch

    demo = strategy is None and not param
    if demo:
        strategy, param, start = DEMO.strategy, DEMO.param_args(), start or DEMO.replay_start
    chosen = list(symbols or [DEMO.symbol])
    launch = AgentLaunch(strategy or DEMO.strategy, chosen, parse_params(param or []), speed)
    launch.fresh, launch.start = fresh, start
    launch.demo = demo and chosen == [DEMO.symbol]
    return launch


def serve_command(
    host: str = typer.Option(None, "--host", help="Address to listen on [config: api.host]."),
    port: int = typer.Option(None, "--port", help="Port [config: api.port].", min=1, max=65535),
    workers: int = typer.Option(None, "--workers", help="Processes [config: api.workers].", min=1),
    precompute: bool = typer.Option(
        False,
        "--precompute",
        help="Also refresh the analyses of precompute.symbols here, as `ffe run` does, "
        "instead of in `ffe precompute` [config: precompute.in_api]. One worker only.",
    ),
    jobs: bool = typer.Option(
        False,
        "--jobs",
        help="Also run queued jobs in the API's processes, api.max_jobs at a time each "
        "[config: jobs.in_api]; without it `ffe worker` runs them.",
    ),
) -> None:
    """Start the API and dashboard without an agent; jobs submitted wait for an `ffe worker`
    (or `--jobs`), and the analysis endpoint reads what `ffe precompute` caches (or
    `--precompute`). With several workers set FFE__REDIS__URL, so rate limits, caches and the
    live stream are shared."""
    with user_errors():
        settings = _settings(host, port, workers=workers, jobs=jobs or None)
        if precompute:
            settings = _with_precompute(settings)
        if settings.api.workers > 1 and settings.precompute.in_api:
            from ffe.domain.errors import ConfigError

            raise ConfigError(
                "--precompute (precompute.in_api) would analyse every symbol once per worker: "
                "run `ffe precompute` beside an API of several workers, or use --workers 1"
            )
        if settings.api.workers > 1:
            _serve_workers(settings)
        else:
            _serve(settings, None)


def _settings(
    host: str | None, port: int | None, workers: int | None = None, jobs: bool | None = None
) -> Settings:
    from ffe.config import load_settings

    settings = load_settings()
    overrides = {"host": host, "port": port, "workers": workers}
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        api = settings.api.model_copy(update=changed)
        settings = settings.model_copy(update={"api": api})
    if jobs is not None:
        settings = settings.model_copy(
            update={"jobs": settings.jobs.model_copy(update={"in_api": jobs})}
        )
    from ffe import bootstrap
    from ffe.api.secrets import session_secret

    session_secret(
        bootstrap.api_options(settings)
    )  # refuse a production config without a secret before anything
    return settings


def _with_precompute(settings: Settings) -> Settings:
    """``settings`` with the analysis schedule run inside the API (precompute.in_api)."""
    section = settings.precompute.model_copy(update={"in_api": True})
    return settings.model_copy(update={"precompute": section})


def _serve(settings: Settings, launch: Any, worker_kind: str = "api") -> None:
    import uvicorn

    from ffe import bootstrap
    from ffe.api.app import create_app
    from ffe.api.server import server_options
    from ffe.api.services import journal_unreachable
    from ffe.cli.startup import (
        announce_summary,
        announce_when_up,
        check_port,
        preflight,
        stopped_report,
    )
    from ffe.domain.errors import StoreError

    check_port(settings.api.host, settings.api.port)
    components = bootstrap.components(settings)
    components.configure_logging()
    say = functools.partial(err_console.print, soft_wrap=True)  # never break a URL in two
    unreachable: StoreError | None = None
    previous = None
    try:
        login, previous = preflight(settings, launch.account if launch else None)
    except StoreError as exc:
        if not journal_unreachable(exc):
            raise
        login, unreachable = None, exc
    app = create_app(components, agent=launch, worker_kind=worker_kind)
    url = f"http://{_display_host(settings.api.host)}:{settings.api.port}"
    if unreachable is not None:
        say(
            f"[yellow]warning:[/yellow] {unreachable}. Starting anyway: /health/ready fails "
            "and requests that need the journal get 503 until it answers. No dashboard user "
            "was checked or made: once it answers, `ffe users create NAME --role admin` adds "
            "one if there is none, and the agent can be started from the Agent page."
        )

    def banner() -> Iterator[str]:  # printed once the server answers, never before
        yield f"[bold]ffe[/bold] dashboard and API on {url}  (API docs: {url}/docs)"
        if unreachable is None:
            yield login or "log in with your dashboard user (`ffe users create` adds one)"
        if launch is not None:
            yield from _agent_banner(app, launch, previous, settings)

    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        **server_options(settings.api.header_timeout_s),
    )
    server = uvicorn.Server(config)
    announce_when_up(server, url, say, banner)
    if launch is not None:
        announce_summary(server, app, say)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then raised the Ctrl-C again
        if launch is not None:
            say(stopped_report(settings, launch.account))
        # exit 0: a Ctrl-C is how a user ends `ffe run`, not a failure (make says Error 130)


def _agent_banner(app: Any, launch: Any, previous: Any, settings: Settings) -> Iterator[str]:
    """What ``ffe run`` says of its agent once the server answers: the run it resumed or
    began, the demo's story when it trades the demo, its risk limits, and how fast it
    replays."""
    from ffe.cli.startup import agent_report
    from ffe.domain.defaults import DEMO

    yield from filter(None, [agent_report(app, previous)])
    if launch.demo:
        yield f'paper agent: {DEMO.story()} (docs/configuration.md, "The demo")'
    risk = settings.risk
    halt = (
        "no drawdown halt"
        if risk.max_drawdown is None
        else (f"halts {risk.max_drawdown:.0%} below its peak")
    )
    yield (
        f"paper agent: risk limits: {halt}, a position at most {risk.max_position_pct:.0%} "
        f"of equity, gross exposure at most {risk.max_gross_leverage:g}x"
    )
    yield f"paper agent: replaying at {launch.speed or 'full'} bars/s; Ctrl-C stops everything"


def _serve_workers(settings: Settings) -> None:
    import os
    import shutil
    import tempfile

    import uvicorn

    from ffe.api.server import server_options
    from ffe.cli.startup import check_port
    from ffe.obs.metrics import MULTIPROC_ENV

    check_port(settings.api.host, settings.api.port)
    # Each worker writes its metrics to files here and /metrics adds them up, whichever worker
    # answers the scrape. It must be in the environment before a worker imports the client.
    made = None
    if not os.environ.get(MULTIPROC_ENV):
        made = tempfile.mkdtemp(prefix="ffe-metrics-")
        os.environ[MULTIPROC_ENV] = made
    if settings.jobs.in_api:  # the workers read their settings again: --jobs must reach them
        os.environ["FFE__JOBS__IN_API"] = "true"

    err_console.print(
        f"ffe API on http://{_display_host(settings.api.host)}:{settings.api.port} "
        f"with {settings.api.workers} workers"
    )
    if settings.redis.url is None:
        err_console.print(
            "[yellow]warning:[/yellow] no FFE__REDIS__URL: each worker keeps its own rate "
            "limits, cache and live stream"
        )
    try:
        uvicorn.run(
            "ffe.api.app:app_from_environment",
            factory=True,
            host=settings.api.host,
            port=settings.api.port,
            workers=settings.api.workers,
            log_level="warning",
            access_log=False,
            **server_options(settings.api.header_timeout_s),
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def health_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check what the API's /health/ready checks (database, Redis, disk, memory, agent)
    from here; exit 1 when a critical check fails."""
    with user_errors():
        from ffe.config import load_settings

        report = asyncio.run(_readiness(load_settings()))
        body = report.as_dict()
        if as_json:
            typer.echo(json.dumps(body, indent=2))
        else:
            for name, check_ in body["checks"].items():
                mark = "[green]ok[/green]" if check_["ok"] else "[red]FAIL[/red]"
                console.print(f"{mark:>18}  {name:<9} {check_['detail']}")
            console.print(f"status: {body['status']}")
        if not report.ok:
            raise typer.Exit(1)


async def _readiness(settings: Settings) -> Any:
    """The checks of the API's /health/ready (``Services._add_checks``), built without the
    API: the journal (checked at its schema), Redis when configured, disk, memory and the
    configured account's agent, read from the journal."""
    from ffe import bootstrap
    from ffe.agent.health import agent_probe
    from ffe.domain.errors import StoreError
    from ffe.obs.health import HealthChecks, ProbeError, disk_probe, memory_probe, ping_probe
    from ffe.store.migrate import ensure_schema

    db = bootstrap.database(settings)
    kv = bootstrap.kv_backends(settings) if settings.redis.url else None
    try:
        failure: StoreError | None = None
        try:
            await ensure_schema(db, auto_upgrade=bootstrap.auto_upgrade(settings, db))
        except StoreError as exc:
            failure = exc

        async def journal() -> str:
            if failure is not None:
                raise ProbeError(str(failure))
            await db.ping()
            return str(db)

        checks = HealthChecks()
        checks.add("database", ping_probe(journal, "database"), dependency="database")
        if kv is not None:
            checks.add("redis", ping_probe(kv.ping, "redis"), critical=False, dependency="redis")
        checks.add("disk", disk_probe(settings.data.dir))
        checks.add("memory", memory_probe(), critical=False)
        checks.add("agent", agent_probe(db, settings.agent.account), critical=False)
        return await checks.run()
    finally:
        if kv is not None:
            await kv.close()
        await db.dispose()


def _with_db(work: Any) -> Any:
    from ffe import bootstrap
    from ffe.config import load_settings

    async def main() -> Any:
        db = await bootstrap.open_journal(load_settings())
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Who or what uses the key."),
    scope: list[str] = typer.Option(["read"], "--scope", help="read, trade or admin."),
) -> None:
    """Make an API key. It is printed once: store it now."""
    from ffe.api import auth

    with user_errors():
        made = _with_db(lambda db: auth.create_key(db, name, scope, "cli"))
        err_console.print(f"key {made.prefix} for {made.name}: {', '.join(sorted(made.scopes))}")
        err_console.print("store it now; it is not shown again:")
        typer.echo(made.key)


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every key (never the secret): prefix, name, scopes, last use, revoked."""
    from ffe.api import auth

    with user_errors():
        rows = _with_db(auth.list_keys)
        items = [
            {
                "prefix": r.prefix,
                "name": r.name,
                "scopes": r.scopes,
                "last_used_at": None if r.last_used_at is None else r.last_used_at.isoformat(),
                "revoked": r.revoked_at is not None,
            }
            for r in rows
        ]
        if as_json:
            typer.echo(json.dumps(items, indent=2))
            return
        for item in items:
            state = "revoked" if item["revoked"] else "active"
            console.print(
                f"{item['prefix']}  {item['name']:<20} {','.join(item['scopes']):<16} {state}"
            )


@keys_app.command("revoke")
def keys_revoke(
    prefix: str = typer.Argument(..., help="The key's prefix (`ffe keys list`)."),
) -> None:
    """Revoke a key; running API processes refuse it within 30 seconds."""
    from ffe.api import auth

    with user_errors():
        row = _with_db(lambda db: auth.revoke_key(db, prefix, "cli"))
        console.print(f"revoked {row.prefix} ({row.name})")


PASSWORD = typer.Option(
    None, "--password", help="The password; asked twice (hidden) when not given."
)


@users_app.command("create")
def users_create(
    username: str = typer.Argument(...),
    role: str = typer.Option("viewer", "--role", help="viewer, trader or admin."),
    password: str | None = PASSWORD,
) -> None:
    """Add a dashboard user. The name and role are checked before the password is asked."""
    from ffe.api import auth
    from ffe.domain.errors import ConfigError

    with user_errors():
        name = auth.check_new_user(username, role)
        if _with_db(lambda db: auth.user_exists(db, name)):
            raise ConfigError(f"user {name!r} exists: pick another name")
        secret = _new_password() if password is None else password
        _with_db(lambda db: auth.create_user(db, name, secret, role, "cli"))
        console.print(f"user {name} ({role}) created")


@users_app.command("passwd")
def users_passwd(username: str = typer.Argument(...), password: str | None = PASSWORD) -> None:
    """Set a user's password."""
    from ffe.api import auth
    from ffe.domain.errors import NotFoundError

    with user_errors():
        if not _with_db(lambda db: auth.user_exists(db, username)):
            raise NotFoundError(f"no user {username!r} (see `ffe users list`)")
        secret = _new_password() if password is None else password
        _with_db(lambda db: auth.set_password(db, username, secret, "cli"))
        console.print(f"password of {username} changed")


def _new_password() -> str:
    """Ask for a password, check it, then ask again to confirm it."""
    from ffe.api.auth import check_password
    from ffe.domain.errors import ConfigError

    first: str = typer.prompt("Password", hide_input=True)
    check_password(first)
    if typer.prompt("Repeat for confirmation", hide_input=True) != first:
        raise ConfigError("the two passwords differ: nothing changed, run the command again")
    return first


@users_app.command("list")
def users_list() -> None:
    from ffe.api import auth

    with user_errors():
        for user in _with_db(auth.list_users):
            state = " (disabled)" if user.disabled else ""
            console.print(f"{user.username:<20} {user.role}{state}")
