"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ffe.api.deps import Reader, ServicesDep, identify
from ffe.api.services import Services
from ffe.domain.errors import FfeError

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> Any:
    """The process answers (no dependencies checked): for a liveness probe."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(request: Request, services: ServicesDep) -> Any:
    """Database, Redis (when configured), disk, memory and the agent's heartbeat; 503 when a
    critical check fails, so a load balancer stops sending traffic here. Each check's detail
    (addresses, paths, errors) only for a caller with the read scope. The checks run at most
    once per ``api.ready_cache_s``, shared by the probes that come meanwhile."""
    report = await services.health.latest(services.options.ready_cache_s)
    services.dependencies.recorded(report)  # ffe_dependency_up, each time they run
    body: dict[str, Any] = report.as_dict()
    if not await _may_read(request, services):
        for check in body["checks"].values():
            check.pop("detail", None)
    return JSONResponse(body, status_code=200 if report.ok else 503)


async def _may_read(request: Request, services: Services) -> bool:
    try:
        address = services.proxies.client(request.scope)
        principal = await identify(services, request.headers, request.cookies, "GET", address)
    except FfeError:  # nobody, or a key that fails: the anonymous view
        return False
    return principal.allows("read")


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep, who: Reader) -> Response:
    """Prometheus exposition (scrape with an API key with the read scope). The job queue's
    numbers (depth, running, live workers and their counts) are read from the journal now,
    and the dependency checks run first when they are older than a few seconds, so
    ``ffe_dependency_up`` is current though nothing calls ``/health/ready`` (each worker of
    ``ffe serve --workers N`` runs its own; the newest value wins).

    The key is checked against the journal: with the database down, a key this process
    checked in the last ``cache_s`` still scrapes (and shows the database down); after that,
    or for a key it never saw, the scrape is refused with 503 and Prometheus records the
    target down (``up`` 0: FfeApiDown)."""
    await services.dependencies.refresh()  # bounded by the checks' timeouts
    try:
        await services.refresh_job_metrics()
    except FfeError as exc:  # the scrape still answers, with the last numbers read
        log.warning("job metrics not refreshed: %s", exc)
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
