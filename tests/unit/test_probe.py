"""The probe server of a process without the API: live, ready (503 on a failed critical
check), metrics refreshed before each scrape, and a bind failure raised."""

from __future__ import annotations

import httpx
import pytest
from tests.support.server import free_port

from ffe.obs.health import HealthChecks
from ffe.obs.metrics import JobsSnapshot, Metrics
from ffe.service.probe import ProbeServer, probe_app


async def test_probe_server_answers_live_ready_and_metrics() -> None:
    checks, metrics = HealthChecks(), Metrics()
    failing = {"now": False}

    async def journal() -> str:
        if failing["now"]:
            raise RuntimeError("journal down")
        return "sqlite"

    checks.add("journal", journal)
    scraped = []

    async def refresh() -> None:
        scraped.append(1)
        metrics.set_jobs(JobsSnapshot(queued=7))

    server = ProbeServer(probe_app(checks, metrics, refresh), "127.0.0.1", free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/health/live")).json() == {"status": "ok"}
            assert (await client.get("/health/ready")).status_code == 200
            failing["now"] = True
            down = await client.get("/health/ready")
            assert down.status_code == 503
            assert "journal down" in down.text
            body = (await client.get("/metrics")).text
            assert "ffe_job_queue_depth 7.0" in body
            assert scraped == [1]
            assert (await client.get("/api/v1/portfolio")).status_code == 404
    finally:
        await server.stop()


async def test_probe_ready_when_redis_check_fails_then_dependency_up_0_database_1() -> None:
    checks, metrics = HealthChecks(), Metrics()

    async def database() -> str:
        return "sqlite"

    async def redis() -> str:
        raise ConnectionError("redis refused the connection")

    checks.add("journal", database, dependency="database")
    checks.add("redis", redis, critical=False, dependency="redis")
    checks.add("disk", database)  # no dependency: no series
    server = ProbeServer(probe_app(checks, metrics), "127.0.0.1", free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            # A scrape runs the dependency checks itself (nothing called /health/ready yet).
            scraped = (await client.get("/metrics")).text
            assert (await client.get("/health/ready")).status_code == 200  # redis: degraded
            body = (await client.get("/metrics")).text
    finally:
        await server.stop()

    assert 'ffe_dependency_up{dependency="database"} 1.0' in scraped
    assert 'ffe_dependency_up{dependency="redis"} 0.0' in scraped
    assert 'ffe_dependency_up{dependency="database"} 1.0' in body
    assert 'ffe_dependency_up{dependency="redis"} 0.0' in body
    assert body.count("ffe_dependency_up{") == 2


async def test_probe_server_raises_when_its_port_is_taken() -> None:
    first = ProbeServer(probe_app(HealthChecks(), Metrics()), "127.0.0.1", free_port())
    await first.start()
    try:
        second = ProbeServer(probe_app(HealthChecks(), Metrics()), "127.0.0.1", first.port)
        with pytest.raises(OSError, match="--health-port"):
            await second.start()
    finally:
        await first.stop()
