"""The probe server of ``ffe agent run`` (and ``ffe worker``, ``ffe precompute``): a scrape of
``/metrics`` runs the dependency checks when they are stale, so ``ffe_dependency_up`` is
current though nothing calls ``/health/ready`` (orchestrators probe ``/health/live``)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from tests.support.agents import replay_agent, sqlite_journal
from tests.support.server import free_port

from ffe.obs.metrics import Metrics
from ffe.service.agents import agent_checks
from ffe.service.probe import ProbeServer, probe_app
from ffe.store.database import Database


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port  # closed again: nothing listens there


async def _scrape(db: Database, data_dir: Path) -> str:
    agent = replay_agent(db, data_dir)
    server = ProbeServer(probe_app(agent_checks(agent), Metrics()), "127.0.0.1", free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            answer = await client.get("/metrics", timeout=10)  # and never /health/ready
            assert answer.status_code == 200
            return answer.text
    finally:
        await server.stop()
        await agent.broker.close()


async def test_agent_probe_metrics_when_journal_unreachable_then_database_up_0(tmp_path):
    dead = Database(f"postgresql://postgres@127.0.0.1:{_refused_port()}/test")
    try:
        body = await _scrape(dead, tmp_path)
    finally:
        await dead.dispose()

    assert 'ffe_dependency_up{dependency="database"} 0.0' in body


async def test_agent_probe_metrics_when_journal_answers_then_database_up_1(tmp_path):
    async with sqlite_journal(tmp_path) as db:
        body = await _scrape(db, tmp_path)

    assert 'ffe_dependency_up{dependency="database"} 1.0' in body
