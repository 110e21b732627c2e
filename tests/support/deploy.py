"""Running the deploy checks (deploy/check.py in .venv-deploy) from the test suite, on the
checkout or on a copy of it with a value broken on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PYTHON = ROOT / ".venv-deploy" / "bin" / "python"
COPIED = ("deploy", ".github", "docs/runbooks", "pyproject.toml", "requirements.lock")
"""What a check may read: the deploy files, the workflows, the runbooks the alerts link to."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def deploy_python() -> Path:
    """The validators' interpreter; skip without it on a developer machine, fail under CI."""
    if not DEPLOY_PYTHON.exists():
        problem = "the deploy tools are not installed (make deploy-tools)"
        if _in_ci():
            pytest.fail(f"{problem}; CI=true requires them")
        pytest.skip(problem)
    return DEPLOY_PYTHON


def run_check(
    *names: str, root: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run some deploy checks (all without names) on ``root``; returns what they printed."""
    return subprocess.run(
        [str(deploy_python()), str(ROOT / "deploy" / "check.py"), "--root", str(root), *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def copy_checkout(into: Path) -> Path:
    """A copy of what the deploy checks read, to break a value in; returns its root."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, into / name, symlinks=True, ignore=shutil.ignore_patterns("node_modules")
            )
        elif source.exists():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def break_value(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in ``path`` by ``new``, failing if not exactly one."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is in {path} {text.count(old)} times, not once"
    path.write_text(text.replace(old, new))
