"""`ffe db upgrade | downgrade | current | history | check` on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()


def _ok(*args: str) -> str:
    """The command's output with rich's line wrapping undone."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())


def _current(url: str) -> dict:
    return json.loads(_ok("db", "current", "--url", url, "--json"))


def test_db_when_upgraded_downgraded_upgraded_then_current_follows(database_url):
    head = _current(database_url)["head"]
    assert _current(database_url)["current"] is None

    assert "upgraded from empty to" in _ok("db", "upgrade", "--url", database_url)
    assert _current(database_url)["current"] == head
    assert "nothing to do" in _ok("db", "upgrade", "--url", database_url)

    assert "base (empty)" in _ok("db", "downgrade", "base", "--url", database_url, "--yes")
    assert _current(database_url)["current"] is None

    _ok("db", "upgrade", "--url", database_url)
    assert _current(database_url)["current"] == head


def test_db_downgrade_when_not_confirmed_then_nothing_dropped(database_url):
    _ok("db", "upgrade", "--url", database_url)

    result = runner.invoke(app, ["db", "downgrade", "base", "--url", database_url], input="n\n")

    assert result.exit_code == 1
    assert _current(database_url)["current"] == _current(database_url)["head"]


def test_db_history_and_check_when_at_head_then_marked_and_clean(database_url):
    _ok("db", "upgrade", "--url", database_url)

    history = _ok("db", "history", "--url", database_url)
    checked = _ok("db", "check", "--url", database_url)

    assert "head current" in history
    assert "integrity check clean" in checked


def test_db_check_when_not_migrated_then_fails_and_says_upgrade(database_url):
    result = runner.invoke(app, ["db", "check", "--url", database_url])

    assert result.exit_code == 1
    assert "ffe db upgrade" in " ".join(result.output.split())


def test_db_current_when_server_down_then_clear_error_without_password():
    result = runner.invoke(app, ["db", "current", "--url", "postgresql://u:hunter2@127.0.0.1:9/x"])

    assert result.exit_code == 2
    assert "is the server running" in " ".join(result.output.split())
    assert "hunter2" not in result.output


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://"])
def test_db_upgrade_when_url_unsupported_then_config_error(url):
    result = runner.invoke(app, ["db", "upgrade", "--url", url])

    assert result.exit_code == 2
    assert "sqlite:///" in result.output
