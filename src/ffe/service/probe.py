"""The small HTTP server a process without the API (``ffe worker``, ``ffe precompute``) runs on
``--health-port`` so an orchestrator can probe it and Prometheus can scrape it:
``/health/live`` (the process answers), ``/health/ready`` (its checks; 503 when a critical one
fails) and ``/metrics``. Nothing else is served, and nothing here needs a credential: bind it to
an address only the orchestrator and the scraper reach (``--health-host``, loopback unless set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ffe.obs.health import DependencyScrape, HealthChecks
from ffe.obs.metrics import Metrics

log = logging.getLogger(__name__)


def probe_app(
    checks: HealthChecks,
    metrics: Metrics,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The probe routes over ``checks`` and ``metrics``; ``before_scrape`` refreshes gauges
    read at scrape time (queue depth, say) before ``/metrics`` renders. A scrape also runs the
    dependency checks when they are older than a few seconds (``DependencyScrape``), so
    ``ffe_dependency_up`` is current though nothing calls ``/health/ready``."""
    dependencies = DependencyScrape(checks, metrics.record_readiness)

    async def live(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> Response:
        report = await checks.run()
        dependencies.recorded(report)  # ffe_dependency_up, each time they run
        return JSONResponse(report.as_dict(), status_code=200 if report.ok else 503)

    async def scrape(_: Request) -> Response:
        await dependencies.refresh()  # bounded by the checks' timeouts
        if before_scrape is not None:
            try:
                await before_scrape()
            except Exception as exc:  # the gauges keep their last values; the scrape answers
                log.warning("metrics not refreshed before a scrape: %s", exc)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes = [
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/metrics", scrape),
    ]
    return Starlette(routes=routes)


class _Server(uvicorn.Server):
    """uvicorn's server leaving signals to the process it runs in (a worker drains on
    SIGTERM; uvicorn would take the signal for itself and raise it again once stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ProbeServer:
    """``probe_app`` served by uvicorn in this process's event loop, on ``host:port``."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self.server = _Server(config)
        self.host, self.port = host, port
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving; ``OSError`` naming the address when it cannot be bound. The socket
        is bound here, not by uvicorn, which exits the whole process when a bind fails."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot serve health probes on {self.host}:{self.port}: {exc.strerror}; "
                "pick another --health-port (0: none)"
            ) from exc
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self.server.serve([sock]), name="ffe-probe")
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"could not serve health probes on {self.host}:{self.port}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop serving (within a few seconds)."""
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5.0)
        self._task = None
