"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ffe.api.deps import Reader, ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> Any:
    """The process answers (no dependencies checked): for a liveness probe."""
    return {"status": "ok"}


@router.get("/health/ready")
async def ready(services: ServicesDep) -> Any:
    """Database, Redis (when configured), disk, memory and the agent's heartbeat; 503 when a
    critical check fails, so a load balancer stops sending traffic here."""
    report = await services.health.run()
    body = report.as_dict()
    return JSONResponse(body, status_code=200 if report.ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics(services: ServicesDep, who: Reader) -> Response:
    """Prometheus exposition (scrape with an API key with the read scope)."""
    queue = services.jobs.queue.qsize()
    services.metrics.set_queue_depth(queue)
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
