"""What ``ffe run`` checks and says around starting the server: that its port is free, the
first login, which agent run it resumes (and how to start afresh), and the URL once the
server answers."""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    from ffe.config import Settings
    from ffe.store.database import Database

FIRST_PASSWORD_FILE = "first-admin-password"


def check_port(host: str, port: int) -> None:
    """Refuse a port something already listens on, before minutes of start-up are spent."""
    problem = _bind_problem(host, port)
    if problem is None:
        return
    if problem.errno == errno.EADDRINUSE:
        free = next((p for p in range(port + 1, min(port + 50, 65536)) if _is_free(host, p)), 0)
        hint = f" {free}" if free else ""
        raise ConfigError(f"port {port} is in use; try --port{hint}")
    raise ConfigError(
        f"cannot listen on {host}:{port} ({problem.strerror}): check --host, or use a port "
        "above 1023"
    )


def _bind_problem(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a server that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc
    return None


def _is_free(host: str, port: int) -> bool:
    return _bind_problem(host, port) is None


# --- the first login ------------------------------------------------------------------------


async def first_login(settings: Settings, db: Database) -> str | None:
    """With no dashboard user yet, make ``admin`` and return how to log in the first time (a
    password is printed only in development); None when there are users."""
    from ffe.api import auth

    if await auth.count_users(db) > 0:
        return None
    given = settings.api.first_admin_password
    if given is not None:
        await auth.create_user(db, "admin", given.get_secret_value(), "admin", "ffe run")
        return (
            "first time: log in as [bold]admin[/bold] with the password set in "
            "api.first_admin_password (change it with `ffe users passwd admin`)"
        )
    password = secrets.token_urlsafe(12)
    if settings.api.environment == "production":
        path = _write_private(settings.data.dir / FIRST_PASSWORD_FILE, password)
        await auth.create_user(db, "admin", password, "admin", "ffe run")
        return (
            f"first time: log in as [bold]admin[/bold] with the password in {escape(str(path))} "
            "(readable by this user only; change it with `ffe users passwd admin`, then "
            "delete the file)"
        )
    await auth.create_user(db, "admin", password, "admin", "ffe run")
    return (
        f"first time: log in as [bold]admin[/bold] with password [bold]{password}[/bold] "
        "(shown once; change it with `ffe users passwd admin`)"
    )


def _write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(partial, path)
    return path


# --- the run an agent would resume ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastRun:
    """The account's last agent run, when it stopped without finishing."""

    id: str
    strategy: str
    symbols: list[str]
    params: dict[str, Any]
    approval: str | None
    bar: int | None
    last_bar_time: str | None
    pending_approvals: int

    def describe(self) -> str:
        where = "before its first bar" if self.bar is None else f"after bar {self.bar + 1:,}"
        if self.last_bar_time:
            where += f" ({self.last_bar_time})"
        waiting = ""
        if self.pending_approvals:
            waiting = (
                f"; {self.pending_approvals} order(s) wait for approval (`ffe agent approvals`)"
            )
        params = ", ".join(f"{k}={v}" for k, v in self.params.items()) or "default parameters"
        return (
            f"run {self.id[:8]}: {self.strategy} ({params}) on {', '.join(self.symbols)}, "
            f"approval {self.approval or 'auto'}, stopped {where}{waiting}"
        )


async def last_run(db: Database, account: str) -> LastRun | None:
    """The account's last run, if it is one an agent could resume (running or interrupted)."""
    from ffe.agent import persist
    from ffe.store.models import Run

    state = await persist.get_state(db, account)
    if state is None or state.run_id is None:
        return None
    async with db.session() as session:
        run = await session.get(Run, state.run_id)
    if run is None or run.status not in ("running", "interrupted"):
        return None
    pending = await persist.approvals_for_run(db, run.id, ["pending"])
    checkpoint = persist.Checkpoint.of(state.checkpoint)
    return LastRun(
        id=run.id,
        strategy=run.strategy,
        symbols=list(run.symbols),
        params=dict(run.params),
        approval=(run.config or {}).get("agent", {}).get("approval"),
        bar=None if checkpoint is None else checkpoint.bar,
        last_bar_time=None if state.last_bar_time is None else f"{state.last_bar_time:%Y-%m-%d}",
        pending_approvals=len(pending),
    )


def agent_report(app: Any, previous: LastRun | None, wait_s: float = 30.0) -> str | None:
    """Once the in-process agent has opened its run: whether it resumed ``previous`` (and how
    to start afresh) or began a new one. None when no agent runs here."""
    supervisor = app.state.services.supervisor
    deadline = time.monotonic() + wait_s
    run_id = None
    while time.monotonic() < deadline and supervisor.error is None:
        run_id = None if supervisor.agent is None else supervisor.agent.run_id
        if run_id is not None:
            break
        time.sleep(0.05)
    if supervisor.error is not None:
        return f"[red]the paper agent did not start:[/red] {escape(supervisor.error)}"
    if run_id is None:
        return None
    approval = supervisor.agent.config.approval
    if previous is not None and previous.id == run_id:
        changed = "" if approval == (previous.approval or "auto") else f"; approval now {approval}"
        return (
            f"paper agent: resuming {escape(previous.describe())}{changed}. "
            "`ffe run --new` starts a new run instead"
        )
    launch = supervisor.launch
    return (
        f"paper agent: new run {run_id[:8]}: {launch.strategy} on {', '.join(launch.symbols)}, "
        f"approval {approval}"
    )


def stopped_report(settings: Settings, account: str | None) -> str:
    """After Ctrl-C: where the agent's run stopped, and the command that resumes it."""
    from ffe import bootstrap
    from ffe.cli.pace import resume_command

    async def work() -> LastRun | None:
        db = await bootstrap.open_journal(settings)
        try:
            return await last_run(db, account or settings.agent.account)
        finally:
            await db.dispose()

    command = f"`{resume_command(['--new'])}`"
    if os.environ.get("MAKELEVEL"):  # started by `make run`
        command = f"`make run` (or {command})"
    last = asyncio.run(work())
    if last is None:
        return f"stopped by Ctrl-C; the paper agent has no unfinished run. Start with {command}"
    return f"stopped by Ctrl-C: paper agent {escape(last.describe())}. Resume it with {command}"


# --- the URL, once the server answers --------------------------------------------------------


def announce_when_up(
    server: Any, url: str, say: Callable[[str], None], lines: Callable[[], Iterable[str]]
) -> threading.Thread:
    """Print ``lines()`` from a thread once ``server`` (uvicorn's) answers ``/health/live`` at
    ``url``; nothing if it stops first (a port taken meanwhile, a failed start)."""

    def watch() -> None:
        import httpx

        while not server.should_exit:
            if server.started:
                try:
                    if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                        for line in lines():
                            say(line)
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.1)

    thread = threading.Thread(target=watch, name="ffe-announce", daemon=True)
    thread.start()
    return thread


def announce_summary(
    server: Any, app: Any, say: Callable[[str], None], poll_s: float = 0.5
) -> threading.Thread:
    """Print the in-process agent's summary (``AgentSupervisor.summary``) once its replay
    has run to the end of the data, while the server goes on serving the dashboard."""

    def watch() -> None:
        while not server.should_exit:
            services = getattr(app.state, "services", None)  # set once the app has started
            summary = None if services is None else services.supervisor.summary
            if summary is not None:
                for line in summary.lines():
                    say(escape(line))
                say("the dashboard stays up (the Agent page shows this summary); Ctrl-C ends it")
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=watch, name="ffe-summary", daemon=True)
    thread.start()
    return thread


def preflight(settings: Settings, account: str | None) -> tuple[str | None, LastRun | None]:
    """The first login (making the admin user if there is none) and the account's last run."""
    from ffe import bootstrap

    async def work() -> tuple[str | None, LastRun | None]:
        db = await bootstrap.open_journal(settings)
        try:
            login = await first_login(settings, db)
            return login, await last_run(db, account or settings.agent.account)
        finally:
            await db.dispose()

    return asyncio.run(work())
