"""``ffe worker``: run the queued jobs (backtests, sweeps, forecast benchmarks) that the API and
the CLI submit, in a process of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ffe.cli.common import err_console, health_port_option, user_errors

if TYPE_CHECKING:
    from ffe.service.jobs.runner import WorkerProcess
    from ffe.service.probe import ProbeServer


def worker_command(
    concurrency: int = typer.Option(
        None, "--concurrency", "-c", min=1, max=64, help="Jobs at once [config: jobs.concurrency]."
    ),
    health_port: int = health_port_option("jobs"),
) -> None:
    """Run queued jobs until SIGTERM or Ctrl-C. Each job runs in a process of its own, at a
    lower CPU priority (jobs.nice). On SIGTERM the worker claims nothing more, gives running
    jobs jobs.drain_s seconds, then ends the rest and hands them back to the queue; a second
    signal ends them at once."""
    import asyncio

    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service.jobs.runner import serve_worker

    with user_errors():
        components = bootstrap.components(load_settings())
        components.configure_logging()

        def ready(process: WorkerProcess, probes: ProbeServer | None) -> None:
            where = "" if probes is None else f"; probes on {probes.host}:{probes.port}"
            err_console.print(
                f"ffe worker {process.worker.owner}: up to {process.worker.concurrency} "
                f"job(s) at once on {process.db}{where}; Ctrl-C or SIGTERM drains it",
                soft_wrap=True,
            )

        asyncio.run(
            serve_worker(
                components, concurrency=concurrency, health_port=health_port, on_ready=ready
            )
        )
