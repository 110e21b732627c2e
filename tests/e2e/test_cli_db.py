"""``ffe db copy``, ``ffe backup`` and ``ffe restore`` end to end, through the command line."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
SECRET = "hunter2-not-printed"
BACKTEST = ("backtest", "run", "--strategy", "sma_cross", "--synthetic", "2", "--bars", "300")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FFE_CONFIG_DIR", str(tmp_path))  # no config.yaml from elsewhere
    return tmp_path / "data"


@pytest.fixture
def journal(data_dir: Path) -> Path:
    """The configured SQLite journal, with one recorded backtest in it."""
    result = _invoke(*BACKTEST, "--param", "fast=5", "--param", "slow=20")
    assert result.exit_code == 0, result.output
    return data_dir / "ffe.db"


def _url(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


def _invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def _run_ids(url: str) -> list[str]:
    result = _invoke("runs", "list", "--url", url, "--json")
    assert result.exit_code == 0, result.output
    return [run["id"] for run in json.loads(result.stdout)]


def test_db_copy_when_sqlite_to_sqlite_then_verified_and_a_second_copy_adds_nothing(
    journal, tmp_path
):
    target = _url(tmp_path / "copy.db")

    first = _invoke("db", "copy", "--to", target, "--batch-size", "100")
    second = _invoke("db", "copy", "--to", target, "--json")

    assert first.exit_code == 0, first.output
    assert "every table verified" in first.stdout
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert report["ok"] is True
    assert sum(t["copied"] for t in report["tables"]) == 0
    assert {t["table"]: t["skipped"] for t in report["tables"]}["equity_points"] == 300
    assert _run_ids(target) == _run_ids(_url(journal))


def test_db_copy_when_postgres_then_round_trip_and_password_never_printed(
    journal, tmp_path, new_postgres_database
):
    postgres = new_postgres_database().replace("://postgres@", f"://postgres:{SECRET}@")
    back = _url(tmp_path / "back.db")

    there = _invoke("db", "copy", "--to", postgres)
    again = _invoke("db", "copy", "--from", postgres, "--to", back, "--json")
    missing = _invoke("db", "copy", "--to", postgres.rsplit("/", 1)[0] + "/no_such_database")

    assert there.exit_code == 0, there.output
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ok"] is True
    assert _run_ids(back) == _run_ids(_url(journal))
    assert missing.exit_code == 2
    assert "no_such_database" in missing.stderr
    for result in (there, again, missing):
        assert SECRET not in result.output
    assert "postgres:***@" in there.stdout


def test_db_copy_when_target_has_rows_the_source_lacks_then_exit_1_with_summary(journal, tmp_path):
    target = tmp_path / "copy.db"
    assert _invoke("db", "copy", "--to", _url(target)).exit_code == 0
    with sqlite3.connect(target) as connection:
        connection.execute(
            "INSERT INTO audit_log (time, actor, action) VALUES ('2024-01-01 00:00:00', 'x', 'y')"
        )

    result = _invoke("db", "copy", "--to", _url(target))

    assert result.exit_code == 1
    assert "verification failed" in result.stderr
    assert "audit_log (0 rows in the source, 1 in the target)" in result.stderr
    assert "audit_log" in result.stdout  # the summary table is still printed


def test_db_copy_when_a_copied_row_was_changed_then_exit_2_naming_table_and_key(journal, tmp_path):
    target = tmp_path / "copy.db"
    assert _invoke("db", "copy", "--to", _url(target)).exit_code == 0
    with sqlite3.connect(target) as connection:
        connection.execute("UPDATE trades SET pnl = pnl + 1 WHERE id = 1")

    refused = _invoke("db", "copy", "--to", _url(target))
    replaced = _invoke("db", "copy", "--to", _url(target), "--overwrite", "--json")

    assert refused.exit_code == 2
    assert "table trades, row id=1" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert replaced.exit_code == 0, replaced.output
    trades = next(t for t in json.loads(replaced.stdout)["tables"] if t["table"] == "trades")
    assert trades["overwritten"] == 1


def test_backup_when_run_three_times_with_keep_2_then_two_remain(journal, tmp_path):
    folder = tmp_path / "backups"

    results = [_invoke("backup", "--dir", str(folder), "--keep", "2", "--json") for _ in range(3)]

    assert [r.exit_code for r in results] == [0, 0, 0], results[-1].output
    made = [Path(json.loads(r.stdout)["backup"]) for r in results]
    assert sorted(p.name for p in folder.glob("*.db")) == sorted(p.name for p in made[1:])
    assert json.loads(results[-1].stdout)["tables"]["equity_points"]["rows"] == 300


def test_backup_when_no_dir_given_then_backups_go_to_the_data_dir(journal, data_dir):
    result = _invoke("backup")

    assert result.exit_code == 0, result.output
    assert len(list((data_dir / "backups").glob("ffe-*Z.db"))) == 1
    assert "backed up" in result.stdout


def test_restore_when_backup_restored_then_runs_come_back_and_refused_without_force(
    journal, tmp_path
):
    made = json.loads(_invoke("backup", "--dir", str(tmp_path / "b"), "--json").stdout)["backup"]
    target = _url(tmp_path / "restored.db")

    first = _invoke("restore", made, "--url", target, "--yes")
    again = _invoke("restore", made, "--url", target, "--yes")
    forced = _invoke("restore", made, "--url", target, "--yes", "--force", "--json")

    assert first.exit_code == 0, first.output
    assert "verified against the manifest" in first.stdout
    assert _run_ids(target) == _run_ids(_url(journal))
    assert again.exit_code == 2
    assert "--force" in again.stderr
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["rows"]["runs"] == 1


def test_restore_when_not_confirmed_then_nothing_changes(journal, tmp_path):
    made = json.loads(_invoke("backup", "--dir", str(tmp_path / "b"), "--json").stdout)["backup"]
    target = tmp_path / "restored.db"

    result = _invoke("restore", made, "--url", _url(target), input="n\n")

    assert result.exit_code == 1
    assert not target.exists()


def test_restore_when_backup_truncated_then_exit_2_and_journal_untouched(journal, tmp_path):
    made = Path(
        json.loads(_invoke("backup", "--dir", str(tmp_path / "b"), "--json").stdout)["backup"]
    )
    made.write_bytes(made.read_bytes()[:4096])
    before = _run_ids(_url(journal))

    result = _invoke("restore", str(made), "--yes", "--force")

    assert result.exit_code == 2
    assert "damaged" in result.stderr
    assert "Traceback" not in result.output
    assert _run_ids(_url(journal)) == before
