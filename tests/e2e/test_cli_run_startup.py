"""`ffe run` as a user starts it: a taken port is refused at once, the URL is printed only
once the server answers, and it says which run the agent resumes and how to start afresh."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.support.server import ffe_process, free_port


def _ffe(*args: str) -> list[str]:
    return [sys.executable, "-m", "ffe", *args]


@contextmanager
def _started(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``ffe run ARGS`` on a free port, its output into ``log``; stopped with Ctrl-C."""
    with ffe_process(log, "run", *args, env=env) as (url, _):
        yield url


def _wait_for_line(log: Path, pattern: str, timeout_s: float = 90.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in:\n{log.read_text()}")


def test_run_when_port_taken_then_refused_at_once_without_the_banner() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()

        done = subprocess.run(
            _ffe("run", "--no-agent", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert f"port {port} is in use; try --port" in done.stderr
    assert "dashboard and API on" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    assert elapsed < 15, elapsed  # the check comes before the journal and the app start


def test_run_when_url_printed_then_the_server_already_answers(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    with _started(log, "--no-agent") as url:
        _wait_for_line(log, re.escape(f"dashboard and API on {url}"))

        answer = httpx.get(f"{url}/health/live", timeout=5)

        assert answer.status_code == 200


def test_run_when_last_run_interrupted_then_says_it_resumes_it_and_new_starts_afresh(
    tmp_path: Path,
) -> None:
    manual = {"FFE__AGENT__APPROVAL": "manual"}
    first_log, again_log, new_log = (tmp_path / f"{n}.log" for n in ("first", "again", "new"))
    with _started(first_log, "--speed", "0", env=manual):
        first = _wait_for_line(first_log, r"paper agent: new run ([0-9a-f]{8})").group(1)
        time.sleep(3)  # the replay reaches its first orders, which wait for approval

    with _started(again_log, "--speed", "0", env=manual):
        said = _wait_for_line(again_log, r"paper agent: resuming run .*").group(0)

    with _started(new_log, "--speed", "0", "--new"):
        fresh = _wait_for_line(new_log, r"paper agent: new run ([0-9a-f]{8})").group(1)

    assert f"resuming run {first}: sma_cross (fast=50, slow=200) on SP500" in said
    assert "approval manual" in said
    assert re.search(r"stopped after bar [\d,]+ \(\d{4}-\d\d-\d\d\)", said), said
    assert re.search(r"\d+ order\(s\) wait for approval", said), said
    assert "`ffe run --new` starts a new run instead" in said
    assert fresh != first


def test_serve_when_data_folder_not_writable_then_one_line_says_what_to_fix(
    tmp_path: Path,
) -> None:
    (tmp_path / "afile").write_text("a file where the data folder should be")
    env = {**os.environ, "FFE__DATA__DIR": str(tmp_path / "afile" / "data")}
    env.pop("FFE__API__SECRET_KEY", None)

    done = subprocess.run(
        _ffe("serve", "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr  # one line
    assert "make data.dir (FFE__DATA__DIR) a folder this user can write" in done.stderr
