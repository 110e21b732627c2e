"""`ffe --help` must stay fast: the CLI may not import the heavy libraries until a command runs.

Checked by what gets imported, not by timing, so the test is stable on a busy machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "numpy",
    "pandas",
    "pyarrow",
    "arch",
    "plotly",
    "scipy",
    "statsmodels",
    "sqlalchemy",
    "alembic",
    "asyncpg",
)


def test_cli_when_help_then_heavy_libraries_not_imported() -> None:
    probe = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from ffe.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )

    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout

    assert json.loads(output.strip().splitlines()[-1]) == []


def test_cli_when_version_then_prints_it() -> None:
    from typer.testing import CliRunner

    from ffe import __version__
    from ffe.cli.app import app

    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert __version__ in result.output
