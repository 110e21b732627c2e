"""The agent as the API tells it: running only while a live agent holds the lease; commands
with no agent running applied to the account's state or refused; approvals of runs that no
longer run refused; the agent in the API restarted after its journal failed."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from tests.support.wait import wait_for

from ffe.agent import persist


def _agents(api) -> dict[str, Any]:
    answer = api.client.get("/api/v1/agent", headers=api.headers())
    assert answer.status_code == 200, answer.text
    return answer.json()


def _hold(api, owner: str, ttl: timedelta, **state: Any) -> None:
    """The account's row as an agent (``owner``) left it."""
    db = api.services.db
    api.client.portal.call(persist.acquire_lease, db, "paper", owner, ttl)
    if state:
        api.client.portal.call(lambda: persist.set_state(db, "paper", **state))


def _post(api, path: str, role: str = "trader") -> Any:
    return api.client.post(f"/api/v1/{path}", headers=api.headers(role))


def test_agent_when_its_holder_was_killed_and_the_lease_expired_then_not_running(api):
    _hold(api, "otherhost:4242:killed", timedelta(seconds=-65), status="running")

    shown = _agents(api)["agents"][0]
    status = api.client.get("/api/v1/status", headers=api.headers()).json()["agents"][0]

    assert (shown["running"], shown["status"], shown["owner"]) == (False, "stopped", None)
    assert (status["running"], status["status"]) == (False, "stopped")


@pytest.mark.parametrize("command", ["pause", "resume", "stop"])
def test_command_when_no_agent_running_then_409_saying_so(api, command):
    _hold(api, "otherhost:4242:gone", timedelta(seconds=-1))

    answer = _post(api, f"agent/{command}")

    assert answer.status_code == 409, answer.text
    assert "no agent is running on account 'paper'" in answer.json()["detail"]
    assert _agents(api)["agents"][0]["status"] == "stopped"


def test_emergency_stop_then_reset_when_no_agent_running_then_applied_and_shown(api):
    _hold(api, "otherhost:4242:gone", timedelta(seconds=-1))

    stopped = _post(api, "agent/emergency-stop")
    halted = _agents(api)["agents"][0]
    refused = _post(api, "agent/reset")  # reset needs admin, as with an agent running
    reset = _post(api, "agent/reset", role="admin")
    lifted = _agents(api)["agents"][0]

    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["queued"] is False
    assert "halted now" in stopped.json()["detail"]
    assert (halted["status"], halted["running"]) == ("halted", False)
    assert halted["halted_reason"] == "emergency stop by key:trader-key"
    assert refused.status_code == 403
    assert reset.status_code == 200, reset.text
    assert reset.json()["queued"] is False
    assert "no longer halted" in reset.json()["detail"]
    assert (lifted["status"], lifted["halted_reason"]) == ("stopped", None)


def test_approve_when_the_approvals_run_no_longer_runs_then_409_and_still_pending(api):
    _start(api, strategy="buy_and_hold", speed=0, approval="manual")
    pending = wait_for(
        lambda: api.client.get("/api/v1/approvals", headers=api.headers()).json()["items"]
    )
    _post(api, "agent/stop")
    wait_for(lambda: not _agents(api)["supervised"]["running"])

    answer = _post(api, f"approvals/{pending[0]['id']}/approve")

    assert answer.status_code == 409, answer.text
    assert "which no agent is trading now" in answer.json()["detail"]
    waiting = api.client.get("/api/v1/approvals", headers=api.headers()).json()["items"]
    assert [a["id"] for a in waiting] == [pending[0]["id"]]


def _start(api, **body: Any) -> None:
    answer = api.client.post("/api/v1/agent/start", json=body, headers=api.headers("trader"))
    assert answer.status_code == 202, answer.text


@contextmanager
def _journal_failing() -> Iterator[None]:
    """Every statement on every database connection of this process fails as on a full
    disk (SQLite's own error), until the block ends."""

    def fail(*_: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    event.listen(Engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", fail)


def test_agent_when_its_journal_fails_then_restarted_on_its_run_once_it_answers(
    api_with, monkeypatch, caplog
):
    from ffe.service import supervisor

    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0.2, 1.0))
    caplog.set_level(logging.WARNING, logger="ffe.service.supervisor")
    # A journal write every few bars: the outage is met at once, not after 256 bars.
    with api_with(FFE__AGENT__FLUSH_EVERY="4") as api:
        _start(api, strategy="sma_cross", params={"fast": 5, "slow": 10}, speed=40)
        watched = api.services.supervisor
        wait_for(lambda: watched.agent.core is not None and watched.agent.core.last_bar > 10)
        run_id = watched.agent.core.journal.run_id

        with _journal_failing():
            wait_for(lambda: watched.restarting, timeout=10)
            time.sleep(1.5)  # the outage goes on: restarts are tried, and fail
            during = watched.describe()
            # Details of /health/ready need a key checked in the journal: the checks themselves.
            report = api.client.portal.call(api.services.health.run).as_dict()
            health = report["checks"]["agent"]
        wait_for(lambda: watched.running, timeout=20)
        bar = watched.agent.core.last_bar if watched.agent.core else 0
        wait_for(lambda: watched.agent.core is not None and watched.agent.core.last_bar > bar + 5)
        after = _agents(api)
        metrics = api.client.get("/metrics", headers=api.headers()).text
        _post(api, "agent/stop")

    assert (during["running"], during["restarting"], during["restarts"]) == (False, True, 0)
    assert "disk is full" in during["error"]
    assert health["ok"] is False
    assert "restarted once the journal answers" in health["detail"]
    assert after["supervised"]["running"] is True
    assert after["supervised"]["restarts"] == 1
    assert after["supervised"]["restarting"] is False
    assert after["agents"][0]["running"] is True
    assert after["agents"][0]["run_id"] == run_id  # it resumed the run it was trading
    assert 'ffe_agent_restarts_total{account="paper"} 1.0' in metrics
    assert any("agent: restarted" in r.getMessage() for r in caplog.records)
