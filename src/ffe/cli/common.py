"""Helpers shared by the command modules: consoles, user-facing error handling and the
journal database a command works on."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from rich.progress import TaskID

    from ffe.store.database import Database

console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
JOBS = typer.Option(
    0, "--jobs", "-j", help="Worker processes; 0 = as many as compute.max_workers allows.", min=0
)

EXECUTOR = typer.Option(
    None,
    "--executor",
    help="Where the work runs: local (a process pool) or ray (a Ray cluster) "
    "[config: compute.executor, default: local].",
)
RAY_ADDRESS = typer.Option(
    None,
    "--ray-address",
    help="The Ray cluster for --executor ray: its head's host:port [config: compute.ray_address].",
)

URL = typer.Option(
    None, "--url", help="Database URL [config: database.url; default SQLite in data.dir]."
)
T = TypeVar("T")

STRATEGY_HELP = "Strategy name, or a class in a file: path/to/file.py:ClassName."


def with_database(
    url: str | None, work: Callable[[Database], Awaitable[T]], *, journal: bool = False
) -> T:
    """Run ``work`` on the configured (or given) database and close it afterwards.

    With ``journal``, the schema is checked first (and, for SQLite, migrated if behind)."""
    from ffe import bootstrap
    from ffe.config import load_settings

    async def main() -> T:
        settings = load_settings()
        if journal:
            db = await bootstrap.open_journal(settings, url)
        else:
            db = bootstrap.database(settings, url)
        async with db:
            return await work(db)

    return asyncio.run(main())


def compute_overrides(executor: str | None, ray_address: str | None) -> dict[str, Any]:
    """``load_settings`` keyword arguments for ``--executor`` and ``--ray-address`` (checked
    there, like the settings they override; an option not given keeps the setting)."""
    given = {"executor": executor, "ray_address": ray_address}
    compute = {key: value for key, value in given.items() if value is not None}
    return {"compute": compute} if compute else {}


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an FfeError into a one-line message and exit code 2, without a traceback."""
    from ffe.domain.errors import FfeError

    try:
        yield
    except FfeError as exc:
        # The message may quote user input such as "[x]": print it as text, never as markup.
        message = Text("error: ", style="bold red").append(str(exc))
        err_console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


_PERCENT = {
    "total_return",
    "cagr",
    "annual_volatility",
    "max_drawdown",
    "win_rate",
    "avg_trade_return",
    "exposure",
    "best_trade",
    "worst_trade",
    "buy_and_hold_return",
}


_DAYS = {"duration", "max_drawdown_duration"}


def format_stat(name: str, value: Any) -> str:
    """A statistic as shown in tables: percentages, days, dates, rounded numbers."""
    if value is None:
        return "-"
    if name in _DAYS and isinstance(value, int | float):
        return f"{value:,.0f} days"
    if name in ("start", "end") and isinstance(value, str):
        return value.removesuffix("T00:00:00+00:00")
    if isinstance(value, float) and name in _PERCENT:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 and not math.isinf(value) else f"{value:,.2f}"
    return str(value)


def parse_params(specs: list[str]) -> dict[str, str]:
    """``--param name=value`` options as a dict (values as typed, for the strategy to parse)."""
    from ffe.domain.errors import ConfigError

    params: dict[str, str] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param {spec!r} must look like name=value, e.g. fast=10")
        params[name.strip()] = value.strip()
    return params


class Progress:
    """A rich progress bar on stderr (silent with --json)."""

    def __init__(self, total: int, *, quiet: bool, description: str = "backtests") -> None:
        from rich.progress import Progress as Bar

        self._bar = Bar(console=err_console, disable=quiet, transient=False)
        self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> Any:
        self._bar.start()
        return lambda: self._bar.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


class ProgressBar:
    """A rich progress bar on stderr for a use case's ``progress(done, total)`` (silent with
    --json). It shows once the use case has said how much there is to do, so an error found
    before that is the only line on stderr."""

    def __init__(self, *, quiet: bool, description: str) -> None:
        from rich.progress import Progress as Bar

        self._bar = Bar(console=err_console, disable=quiet, transient=False)
        self._description = description
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        return self

    def __call__(self, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._bar.add_task(self._description, total=total)
            self._bar.start()
        self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def health_port_option(section: str) -> Any:
    """The ``--health-port`` option of a process without the API (its probes and metrics)."""
    return typer.Option(
        None,
        "--health-port",
        min=0,
        max=65535,
        help="Serve /health/live, /health/ready and /metrics here; 0 = none "
        f"[config: {section}.health_port].",
    )


def health_host_option(section: str) -> Any:
    """The ``--health-host`` option: the address ``--health-port`` binds."""
    return typer.Option(
        None, "--health-host", help=f"Address of the health port [config: {section}.health_host]."
    )
