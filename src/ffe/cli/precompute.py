"""``ffe precompute``: the analysis cache for the configured symbols, refreshed on a schedule
in a process of its own, so the API only reads it."""

from __future__ import annotations

import typer

from ffe.cli.common import err_console, health_host_option, health_port_option, user_errors


def precompute_command(
    once: bool = typer.Option(
        False, "--once", help="Refresh every symbol once and exit; exit 1 if one failed."
    ),
    health_port: int = health_port_option("precompute"),
    health_host: str = health_host_option("precompute"),
) -> None:
    """Refresh the analyses of precompute.symbols every precompute.interval_s into the shared
    cache (Redis when redis.url is set, else the journal) until SIGTERM or Ctrl-C; `ffe serve`
    answers GET /api/v1/analysis/{symbol} from it."""
    import asyncio
    import functools

    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service.precompute import Probes, run_precompute

    with user_errors():
        components = bootstrap.components(load_settings())
        chosen = components.precompute
        probes = Probes(
            health_host or chosen.health_host,
            chosen.health_port if health_port is None else health_port,
        )
        components.configure_logging()
        say = functools.partial(err_console.print, soft_wrap=True, highlight=False, markup=False)
        status = asyncio.run(run_precompute(components, probes, once=once, say=say))
    raise typer.Exit(status)
