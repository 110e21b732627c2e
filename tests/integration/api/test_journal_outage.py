"""The API starts without its journal: 503 and not ready until the database answers, instead
of exiting (behind a supervisor that is a crash loop), then serves once it does."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ffe import bootstrap
from ffe.config import load_settings

KEY = "ffe_00000000_" + "x" * 43  # shaped like a key; nothing can check it yet


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(client: TestClient, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        status = client.get("/health/ready").status_code
        if status == 200:
            break
        time.sleep(0.1)
    return status


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from ffe.api import services

    monkeypatch.setenv("FFE__API__ANALYSIS_SYMBOLS", "[]")
    monkeypatch.setattr(services, "JOURNAL_RETRY_S", (0.1, 0.3))


def test_journal_unreachable_at_start_then_not_ready_503_and_serves_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    from ffe.api import auth
    from ffe.api.app import create_app

    blocker = tmp_path / "journal"
    blocker.write_text("a file where the journal's folder should be")
    monkeypatch.setenv("FFE__DATABASE__URL", f"sqlite+aiosqlite:///{blocker / 'ffe.db'}")
    app = create_app(bootstrap.components(load_settings()))

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["ok"] is False
        answer = client.get("/api/v1/status", headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 503, answer.text
        assert "retry" in answer.json()["detail"]
        assert str(blocker) not in answer.text

        blocker.unlink()  # the operator fixes it; the next check migrates and serves
        assert _wait_ready(client) == 200
        services = client.app.state.services  # type: ignore[attr-defined]
        key = client.portal.call(  # type: ignore[union-attr]
            auth.create_key, services.db, "after", ["read"], "test"
        ).key
        status = client.get("/api/v1/status", headers={"Authorization": f"Bearer {key}"})
        assert status.status_code == 200, status.text
        jobs = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {key}"})
        assert jobs.status_code == 200, jobs.text


def test_postgres_refusing_connections_at_start_then_api_up_and_not_ready(
    monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    from ffe.api.app import create_app

    port = _free_port()  # nothing listens there
    monkeypatch.setenv("FFE__DATABASE__URL", f"postgresql://postgres@127.0.0.1:{port}/test")
    app = create_app(bootstrap.components(load_settings()))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"]["ok"] is False


def test_journal_at_unknown_schema_revision_then_start_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    """A journal that answers with a schema this ffe cannot use is not waited for: nothing
    will change by itself, so start-up stops and says what to do."""
    import sqlite3

    from ffe.api.services import Services
    from ffe.domain.errors import StoreError

    path = tmp_path / "ffe.db"
    monkeypatch.setenv("FFE__DATABASE__URL", f"sqlite+aiosqlite:///{path}")
    settings = load_settings()
    asyncio.run(_migrated(settings))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")

    with pytest.raises(StoreError, match="upgrade ffe"):
        asyncio.run(Services.open(bootstrap.components(settings), background=False))


async def _migrated(settings: object) -> None:
    from ffe import bootstrap

    db = await bootstrap.open_journal(settings)  # type: ignore[arg-type]
    await db.dispose()


def test_journal_file_corrupt_then_start_refused_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    """A file that is not a database answers, wrongly: waiting will not fix it."""
    from ffe.api.services import Services
    from ffe.domain.errors import StoreError

    path = tmp_path / "ffe.db"
    path.write_bytes(b"this is not a SQLite database, whatever its name says" * 100)
    monkeypatch.setenv("FFE__DATABASE__URL", f"sqlite+aiosqlite:///{path}")

    with pytest.raises(StoreError, match="not a database"):
        asyncio.run(Services.open(bootstrap.components(load_settings()), background=False))


def test_readiness_when_journal_unreachable_then_dependency_up_0_and_1_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    """``ffe_dependency_up`` follows the readiness checks each time they run; Redis, not
    configured here, has no series."""
    from ffe.api.app import create_app

    blocker = tmp_path / "journal"
    blocker.write_text("a file where the journal's folder should be")
    monkeypatch.setenv("FFE__DATABASE__URL", f"sqlite+aiosqlite:///{blocker / 'ffe.db'}")
    app = create_app(bootstrap.components(load_settings()))

    with TestClient(app, raise_server_exceptions=False) as client:
        registry = client.app.state.services.metrics.registry  # type: ignore[attr-defined]

        def up(dependency: str) -> float | None:
            return registry.get_sample_value("ffe_dependency_up", {"dependency": dependency})

        assert up("database") is None  # no check run yet
        assert client.get("/health/ready").status_code == 503
        assert up("database") == 0
        blocker.unlink()
        assert _wait_ready(client) == 200
        assert up("database") == 1
        assert up("redis") is None


def test_metrics_when_journal_goes_down_then_scrape_shows_database_down_without_readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_retries: None
) -> None:
    """Prometheus scrapes /metrics and nothing calls /health/ready (orchestrators probe
    /health/live): the scrape runs the dependency checks itself when they are stale. A key
    checked before the outage still scrapes (it is remembered for ``cache_s``); one never
    seen cannot be checked, and the scrape gets 503 (Prometheus: ``up`` 0, FfeApiDown)."""
    from ffe.api import auth
    from ffe.api.app import create_app

    folder = tmp_path / "journal"
    monkeypatch.setenv("FFE__DATABASE__URL", f"sqlite+aiosqlite:///{folder / 'ffe.db'}")
    app = create_app(bootstrap.components(load_settings()))

    with TestClient(app, raise_server_exceptions=False) as client:
        assert _wait_ready(client) == 200
        services = client.app.state.services  # type: ignore[attr-defined]
        services.dependencies.max_age_s = 0.2  # stale sooner than the default few seconds
        created = client.portal.call  # type: ignore[union-attr]
        key = created(auth.create_key, services.db, "prometheus", ["read"], "test").key
        unseen = created(auth.create_key, services.db, "unseen", ["read"], "test").key
        headers = {"Authorization": f"Bearer {key}"}
        time.sleep(0.3)
        live = client.get("/metrics", headers=headers)

        folder.rename(tmp_path / "moved")  # the journal's disk is gone...
        folder.write_text("a file where the journal's folder should be")
        client.portal.call(services.db.dispose)  # ...and with it every open connection
        time.sleep(0.3)
        down = client.get("/metrics", headers=headers)
        refused = client.get("/metrics", headers={"Authorization": f"Bearer {unseen}"})

    assert live.status_code == 200, live.text
    assert 'ffe_dependency_up{dependency="database"} 1.0' in live.text
    assert down.status_code == 200, down.text
    assert 'ffe_dependency_up{dependency="database"} 0.0' in down.text
    assert refused.status_code == 503, refused.text
