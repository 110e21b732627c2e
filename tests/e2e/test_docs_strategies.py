"""docs/strategies.md runs as written: its files are saved, then its commands run in order."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"
FILE = re.compile(r"```python file=(\S+)\n(.*?)```", re.DOTALL)
CONSOLE = re.compile(r"```console\n(.*?)```", re.DOTALL)


def _commands(text: str) -> list[list[str]]:
    lines = [line for block in CONSOLE.findall(text) for line in block.splitlines()]
    return [shlex.split(line.removeprefix("$ ")) for line in lines if line.startswith("$ ffe ")]


def test_tutorial_when_collected_then_a_file_and_every_step() -> None:
    text = DOC.read_text(encoding="utf-8")
    commands = [" ".join(command[1:3]) for command in _commands(text)]

    assert [name for name, _ in FILE.findall(text)] == ["breakout.py"]
    assert commands == ["check lookahead", "backtest run", "backtest sweep", "agent run"]


def test_tutorial_when_run_then_every_command_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
    text = DOC.read_text(encoding="utf-8")
    for name, code in FILE.findall(text):
        (tmp_path / name).write_text(code, encoding="utf-8")

    for command in _commands(text):
        result = CliRunner().invoke(app, command[1:])

        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
        assert "warning:" not in result.output, result.output
