"""``ffe precompute`` as an operator runs it: a process of its own that fills the analysis
cache (the journal without Redis, Redis with it) for ``ffe serve`` to answer from, probes on
``--health-port``, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest
from tests.conftest import REDIS_URL, require_redis
from tests.support.server import ffe_server, free_port, wait_live
from tests.support.wait import wait_for
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
# A Redis database of this file's own: its keys are deleted one by one, never flushed.
REDIS_DB = 11
ANALYSIS_KEYS = ("ffe:cache:analysis:SP500", "ffe:cache:analysis-failed:SP500")


@pytest.fixture(autouse=True)
def _configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFE__PRECOMPUTE__SYMBOLS", '["SP500"]')
    monkeypatch.setenv("FFE__PRECOMPUTE__INTERVAL_S", "600")


def _key() -> dict[str, str]:
    made = runner.invoke(app, ["keys", "create", "reader", "--scope", "read"])
    assert made.exit_code == 0, made.output
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


@contextmanager
def _precompute(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """``ffe precompute --health-port P ARGS`` once its probes answer; yield their base URL
    and its log. The test stops it (SIGTERM) and checks how it ended."""
    port = free_port()
    log = Path(os.environ["FFE__DATA__DIR"]) / f"precompute-{port}.log"
    command = [sys.executable, "-m", "ffe", "precompute", "--health-port", str(port), *args]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_live(url, process, log)
        yield url, log
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _refreshed(url: str) -> bool:
    """Whether SP500's analysis has been stored, by the process's metrics."""
    body = httpx.get(f"{url}/metrics", timeout=5).text
    return any(
        line.startswith("ffe_analysis_refreshes_total{")
        and 'symbol="SP500"' in line
        and 'result="ok"' in line
        and float(line.rsplit(" ", 1)[1]) >= 1
        for line in body.splitlines()
    )


def _journal_entries() -> int:
    """Rows in the journal's cache table (the SQLite file in the data directory)."""
    journal = Path(os.environ["FFE__DATA__DIR"]) / "ffe.db"
    with closing(sqlite3.connect(journal)) as connection:
        return int(connection.execute("SELECT count(*) FROM cache_entries").fetchone()[0])


def test_precompute_once_when_no_redis_then_serve_answers_from_journal() -> None:
    headers = _key()
    done = subprocess.run(
        [sys.executable, "-m", "ffe", "precompute", "--once"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "SP500: stored" in done.stderr
    assert "into the journal" in done.stderr

    with ffe_server("serve") as (url, _), httpx.Client(base_url=url, headers=headers) as client:
        found = client.get("/api/v1/analysis/SP500")
        other = client.get("/api/v1/analysis/NASDAQ")  # has bars, not configured

    assert found.status_code == 200
    assert found.json()["computed_at"]
    assert other.status_code == 404
    assert "add NASDAQ to precompute.symbols" in other.json()["detail"]


@pytest.mark.parametrize("cache", ["journal", "redis"])
def test_precompute_when_running_then_probed_serve_reads_it_and_sigterm_exits_0(
    cache: str,
) -> None:
    env = {}
    if cache == "redis":
        require_redis()
        env["FFE__REDIS__URL"] = REDIS_URL.rpartition("/")[0] + f"/{REDIS_DB}"
        _forget(env["FFE__REDIS__URL"])
    headers = _key()
    try:
        with _precompute(env=env) as (probes, log):
            wait_for(lambda: _refreshed(probes), timeout=180, every=0.5)
            ready = httpx.get(f"{probes}/health/ready", timeout=10)
            with ffe_server("serve", env=env) as (url, _):
                found = httpx.get(f"{url}/api/v1/analysis/SP500", headers=headers, timeout=10)
            in_redis = _stored_in_redis(env["FFE__REDIS__URL"]) if env else False
    finally:
        if env:
            _forget(env["FFE__REDIS__URL"])

    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert "last analysis stored" in checks["refresh"]["detail"]
    assert ("redis" in checks) == (cache == "redis")
    assert found.status_code == 200, found.text
    assert found.json()["computed_at"]
    assert f"into {'Redis at redis://' if env else 'the journal'}" in log.read_text()
    assert in_redis == (cache == "redis")
    assert (_journal_entries() > 0) == (cache == "journal")


def test_run_when_no_precompute_process_then_the_api_computes_analyses_itself() -> None:
    headers = _key()
    with (
        ffe_server("run", "--no-agent") as (url, _),
        httpx.Client(base_url=url, headers=headers, timeout=10) as client,
    ):
        first = client.get("/api/v1/analysis/NASDAQ")  # not scheduled: computed on request
        scheduled = wait_for(lambda: _answered(client, "SP500"), timeout=180, every=0.5)
        requested = wait_for(lambda: _answered(client, "NASDAQ"), timeout=180, every=0.5)

    assert first.status_code == 202
    assert first.headers["Retry-After"] == "2"
    assert scheduled["computed_at"]
    assert requested["computed_at"]


def _answered(client: httpx.Client, symbol: str) -> dict[str, object] | None:
    response = client.get(f"/api/v1/analysis/{symbol}")
    assert response.status_code in (200, 202), response.text
    return response.json() if response.status_code == 200 else None


def test_precompute_once_when_a_symbol_fails_then_exit_1_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FFE__PRECOMPUTE__SYMBOLS", '["NOPE"]')

    result = runner.invoke(app, ["precompute", "--once"])

    assert result.exit_code == 1
    assert "NOPE: failed: unknown symbol 'NOPE'" in result.output


def test_precompute_when_health_port_taken_then_exit_2_naming_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["precompute", "--health-port", port])

    assert result.exit_code == 2
    assert "pick another --health-port" in result.output


def test_serve_when_precompute_with_several_workers_then_refused() -> None:
    result = runner.invoke(app, ["serve", "--precompute", "--workers", "2"])

    assert result.exit_code == 2
    assert "run `ffe precompute` beside an API of several workers" in result.output


def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)


def _stored_in_redis(url: str) -> bool:
    client = _redis(url)
    try:
        return bool(client.exists(ANALYSIS_KEYS[0]))
    finally:
        client.close()


def _forget(url: str) -> None:
    """Delete this file's analysis keys (only those) from its Redis database."""
    client = _redis(url)
    try:
        client.delete(*ANALYSIS_KEYS)
    finally:
        client.close()
