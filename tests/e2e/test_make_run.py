"""`make run` ended by Ctrl-C ends quietly; a real failure of ffe still fails it.

The Makefile's `run` target is run against a stand-in `ffe` in a throwaway virtualenv folder
(its install stamps made newer than the locks, so nothing is installed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _stand_in(tmp_path: Path, script: str) -> Path:
    """A folder where `make run` finds its install done and `ffe` is ``script``."""
    for name in ("requirements.lock", "pyproject.toml"):
        (tmp_path / name).write_text("")
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("")
    ffe = bin_dir / "ffe"
    ffe.write_text("#!/bin/sh\n" + script)
    ffe.chmod(0o755)
    later = time.time() + 5
    (tmp_path / "venv" / ".installed").write_text("")
    os.utime(tmp_path / "venv" / ".installed", (later, later))
    return tmp_path


def _make_run(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "-f", str(MAKEFILE), "-C", str(folder), "run", "VENV=venv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's job is
    )


def test_make_run_when_ctrl_c_then_no_make_error(tmp_path: Path) -> None:
    # Like ffe: prints once it is up, and dies of Ctrl-C (a shell's status for that is 130).
    # Its sleep (in the background, so immune to SIGINT) is ended with it and never holds
    # make's output open: otherwise communicate() waits the whole sleep out.
    script = "trap 'kill $pid; exit 130' INT\necho up\nsleep 30 >/dev/null 2>&1 &\npid=$!\nwait\n"
    folder = _stand_in(tmp_path, script)
    make = _make_run(folder)
    assert make.stdout is not None
    while "up" not in make.stdout.readline():
        assert make.poll() is None, make.stderr.read() if make.stderr else ""
    os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    _, err = make.communicate(timeout=30)
    assert "Error" not in err
    assert "Interrupt" not in err


def test_make_run_when_ffe_fails_then_make_fails(tmp_path: Path) -> None:
    folder = _stand_in(tmp_path, "exit 3\n")
    make = _make_run(folder)
    _, err = make.communicate(timeout=30)
    assert make.returncode != 0
    assert "Error 3" in err
