"""The replay agent's LLM voter, configured only by settings (``FFE__LLM__*``) through the
composition root: the key reaches the server as a bearer token and never the journal; a
failing server's decisions say why, ``ffe_llm_failures_total`` counts them by reason, and the
run's record and the account's status count them too (across a stop and a resume)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.agents import Recorder
from tests.support.fake_llm import FakeLlmServer, running_llm_server

from ffe import bootstrap
from ffe.config import load_settings
from ffe.obs.metrics import Metrics
from ffe.service.reporting import AgentReporter
from ffe.store.database import Database
from ffe.store.models import Decision, Run

KEY = "sk-agent-0123456789"
ENSEMBLE = {"models": "naive,drift", "window": 60, "refit_every": 21, "horizon": 5, "every": 10}


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLlmServer]:
    with running_llm_server() as started:
        monkeypatch.chdir(tmp_path)  # no config.yaml from the working directory
        monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
        monkeypatch.delenv("FFE__DATABASE__URL", raising=False)
        monkeypatch.setenv("FFE__LLM__PROVIDER", "openai")
        monkeypatch.setenv("FFE__LLM__BASE_URL", f"{started.url}/v1")
        monkeypatch.setenv("FFE__LLM__MODEL", "fake-model")
        monkeypatch.setenv("FFE__LLM__API_KEY", KEY)
        monkeypatch.setenv("FFE__LLM__MAX_RETRIES", "0")
        yield started


async def _replay(metrics: Metrics) -> tuple[list[Decision], list[Run]]:
    """Replay SP500 over 2018 with the ensemble, reported into ``metrics``; its journal."""
    settings = load_settings()
    agent = await bootstrap.agent(
        settings, "ensemble", dict(ENSEMBLE), ["SP500"], start="2018-01-01", end="2018-12-31"
    )
    reporter = AgentReporter(Recorder(), metrics, equity_interval_s=0.0)
    reporter.attach(agent)
    try:
        await agent.run()
        await reporter.settle()
        return await _rows(agent.db, Decision), await _rows(agent.db, Run)
    finally:
        await agent.db.dispose()


async def _rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.scalars(select(model))).all())


def _failures(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("ffe_llm_failures_total", {"reason": reason})


async def test_agent_when_llm_only_in_settings_then_it_votes_with_the_bearer_key(
    server: FakeLlmServer,
) -> None:
    metrics = Metrics()

    decisions, runs = await _replay(metrics)

    assert len(decisions) > 10
    assert len(server.requests) == len(decisions)  # asked at each decision
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert all(row.votes["weights"]["llm"] > 0 for row in decisions)
    assert all("llm_failure" not in row.votes for row in decisions)
    assert _failures(metrics, "http_error") is None
    assert KEY not in json.dumps([run.params for run in runs])
    assert KEY not in json.dumps([run.stats for run in runs], default=str)
    assert runs[0].stats["llm_failures"] == 0


async def test_agent_when_server_answers_500_then_decisions_and_metric_say_why(
    server: FakeLlmServer,
) -> None:
    server.default = "500"
    metrics = Metrics()

    decisions, runs = await _replay(metrics)

    reasons = [row.votes["llm_failure"]["reason"] for row in decisions]
    assert len(decisions) > 10
    assert reasons[:5] == ["http_error"] * 5
    assert set(reasons[5:]) == {"breaker_open"}
    assert len(server.requests) == 5  # the breaker spared the server the rest
    assert _failures(metrics, "http_error") == 5
    assert _failures(metrics, "breaker_open") == len(decisions) - 5
    assert runs[0].stats["llm_failures"] == len(decisions)
    for row in decisions:
        assert "llm" not in row.votes["weights"]
        assert "The llm voter failed (" in (row.rationale or "")
        assert server.url not in (row.rationale or "")


async def test_agent_when_stopped_and_resumed_then_run_and_status_count_every_llm_failure(
    server: FakeLlmServer,
) -> None:
    server.default = "500"
    settings = load_settings()
    stepped: list[int] = []

    async def run(stop_after: int | None) -> Any:
        agent = await bootstrap.agent(
            settings, "ensemble", dict(ENSEMBLE), ["SP500"], start="2018-01-01", end="2018-12-31"
        )
        if stop_after is not None:

            def count(_: Any) -> None:
                stepped.append(1)
                if len(stepped) >= stop_after:
                    agent.request_stop()

            agent.watch(on_bar=count)
        try:
            report = await agent.run()
            return report, await agent.status(), await _rows(agent.db, Decision)
        finally:
            await agent.db.dispose()

    stopped, between, before = await run(stop_after=120)
    resumed, after, decisions = await run(stop_after=None)

    assert (stopped.status, resumed.resumed, resumed.status) == ("interrupted", True, "finished")
    assert 0 < len(before) < len(decisions)
    assert between is not None
    assert between.as_dict()["llm_failures"] == len(before)
    assert stopped.stats["llm_failures"] == len(before)
    assert resumed.stats["llm_failures"] == len(decisions)  # the first session's count kept
    assert after is not None
    assert after.as_dict()["llm_failures"] == len(decisions)
