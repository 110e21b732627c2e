"""Running the deploy checks (deploy/check.py in .venv-deploy) from the test suite, on the
checkout or on a copy of it with a value broken on purpose; and loading what the deploy files
give an ffe process (its FFE__* settings, its command line) with ffe itself, which the
validators' environment does not have."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest

if TYPE_CHECKING:
    from ffe.config import Settings

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


def broken_copy(path: Path | str, old: str, new: str, *, into: Path) -> Path:
    """A copy of the checkout in ``into`` with ``old`` replaced by ``new`` in ``path`` (relative
    to the root); returns its root."""
    root = copy_checkout(into)
    break_value(root / path, old, new)
    return root


def passing(check: str, root: Path = ROOT) -> str:
    """Run the deploy check ``check`` on ``root``, which it must pass (exit 0, ``ok   check``);
    returns what it printed, what it verified."""
    done = run_check(check, root=root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ok   {check}" in done.stdout, done.stdout + done.stderr
    return done.stdout


def failing(check: str, root: Path) -> str:
    """Run the deploy check ``check`` on ``root``, which it must fail (exit 1, ``FAIL check``,
    not a crash); returns what it printed, the problems it names."""
    done = run_check(check, root=root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAIL {check}" in done.stdout, done.stdout + done.stderr
    return done.stdout


def broken(check: str, path: Path | str, old: str, new: str, *, into: Path) -> str:
    """Run ``check`` on a copy of the checkout in ``into`` with ``old`` replaced by ``new`` in
    ``path``; it must fail, and what it printed is returned to say why."""
    return failing(check, broken_copy(path, old, new, into=into))


def render_chart(into: Path, root: Path = ROOT) -> list[Path]:
    """The Helm chart of ``root`` rendered for every values set the helm check renders,
    written under ``into`` (one folder a values set, one file a manifest) by
    ``python -m checks.helm --out``; returns the files."""
    done = subprocess.run(
        [str(deploy_python()), "-m", "checks.helm", "--root", str(root), "--out", str(into)],
        cwd=ROOT / "deploy",
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return sorted(into.glob("*/*.yaml"))


def example_values() -> dict[str, str]:
    """deploy/.env.example's variables, a secret left blank there given a 32-character one."""
    values = {}
    for line in (ROOT / "deploy" / ".env.example").read_text().splitlines():
        match = re.match(r"^([A-Za-z_]\w*)=(.*)$", line)
        if match:
            values[match[1]] = match[2] or "x" * 32  # a secret to fill in
    return values


def interpolate(text: str, values: Mapping[str, str]) -> str:
    """``text`` with its ${VAR}, ${VAR:-default} (and the like) filled as Compose would."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return values.get(match[1]) or match[3] or ""

    return re.sub(r"\$\$|\$\{(\w+)(:?[-?+]([^}]*))?\}", one, text)


def load_ffe_settings(environment: Mapping[str, str]) -> Settings:
    """ffe's settings as a process with exactly these FFE__* variables would load them (any
    FFE__* of the test's own environment is left out); raises ffe's ConfigError naming a
    variable or value ffe does not accept."""
    from ffe.config import load_settings

    with mock.patch.dict(os.environ):
        for name in [name for name in os.environ if name.upper().startswith("FFE__")]:
            del os.environ[name]
        os.environ.update(environment)
        return load_settings()


def parse_ffe_arguments(arguments: Sequence[str]) -> Any:
    """The click context of ``ffe ARGUMENTS`` as the ``ffe`` command would parse it, down to
    its subcommand, without running anything; raises click's UsageError (NoSuchOption,
    BadParameter, no such command) for what ``ffe`` would refuse."""
    import typer
    from typer.core import TyperGroup

    from ffe.cli.app import app

    name, command, words, context = "ffe", typer.main.get_command(app), list(arguments), None
    while True:
        context = command.make_context(name, words, parent=context, resilient_parsing=False)
        if not isinstance(command, TyperGroup):
            return context
        # What the group's invoke would do: the first word names the subcommand.
        rest = [*context._protected_args, *context.args]
        name, command, words = command.resolve_command(context, rest)
