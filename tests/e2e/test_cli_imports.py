"""The simple commands stay quick: what they import, checked in a fresh interpreter.

Wall time is not asserted (a loaded machine would make that flaky); the heavy libraries a
command must not load are. ``bench/bench_cli.py`` has the timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Libraries that cost tens to hundreds of milliseconds each to import.
NUMERIC = {"numpy", "pandas", "scipy", "sklearn", "arch", "statsforecast", "pyarrow", "plotly"}
SERVERS = {"fastapi", "starlette", "uvicorn", "httpx", "prometheus_client", "opentelemetry"}
OTHERS = {"ccxt", "optuna", "ray", "redis", "asyncpg", "argon2", "cryptography", "jinja2"}
DATABASE = {"sqlalchemy", "aiosqlite", "alembic", "mako"}
HEAVY = NUMERIC | SERVERS | OTHERS | DATABASE
PROBE = """
import json, runpy, sys
sys.argv = ["ffe", *sys.argv[1:]]
try:
    runpy.run_module("ffe", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _loaded(tmp_path: Path, *argv: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FFE__")}
    env |= {"FFE__DATA__DIR": str(tmp_path), "FFE_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    return set(report["loaded"])


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("config", "show"), ("config", "show", "--json"), ("runs", "--help")],
)
def test_simple_command_when_run_then_no_heavy_library_imported(tmp_path: Path, argv):
    loaded = _loaded(tmp_path, *argv)

    assert "ffe" in loaded  # the probe ran the command
    assert loaded & HEAVY == set()


@pytest.mark.parametrize(
    "argv", [("runs", "list"), ("health",), ("keys", "create", "ci"), ("users", "list")]
)
def test_journal_command_when_at_head_then_only_the_database_driver_loaded(tmp_path: Path, argv):
    _loaded(tmp_path, "runs", "list")  # makes and migrates the journal

    loaded = _loaded(tmp_path, *argv)

    assert "sqlalchemy" in loaded
    assert loaded & (NUMERIC | SERVERS | {"alembic", "mako"}) == set()
