"""What every deploy check shares: the error, running a validator, reading YAML documents."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class CheckError(Exception):
    """A deploy file failed a check; the message lists every problem, one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def fail_if(problems: Sequence[str]) -> None:
    """Raise ``CheckError`` when there is any problem."""
    if problems:
        raise CheckError(problems)


def tool(name: str) -> str:
    """A validator's executable: beside this interpreter (a wheel's script) or on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise CheckError([f"{name} is not installed: `make deploy-check` installs the tools"])
    return found


def run(
    command: Sequence[str], *, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a validator and return what it did, whatever its exit code."""
    return subprocess.run(
        list(command), cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a multi-document text."""
    return [each for each in yaml.safe_load_all(text) if each]


def load(path: Path) -> Any:
    """One YAML file."""
    return yaml.safe_load(path.read_text())
