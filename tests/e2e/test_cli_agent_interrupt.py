"""``ffe agent run`` outside a terminal: plain progress lines and the speed it achieved; on
Ctrl-C (SIGINT) it stops cleanly, says where, and prints the command that resumes the run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from typer.testing import CliRunner

from ffe.cli.app import app

ARGS = ["agent", "run", "--start", "2012-01-01", "-p", "fast=5", "-p", "slow=10"]
PROGRESS = re.compile(r"^agent: bar ([\d,]+) of 1,760 \(\d{4}-\d{2}-\d{2}\), [\d,]+ bars/s$")


def test_agent_run_when_not_a_terminal_then_plain_progress_and_speed_lines():
    result = CliRunner().invoke(app, ARGS)

    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "agent: started, 1,760 bars to replay"
    progress = [int(m.group(1).replace(",", "")) for m in map(PROGRESS.match, lines) if m]
    assert progress[-1] == 1760
    assert len(progress) >= 10  # each tenth at least
    assert progress == sorted(progress)
    assert re.fullmatch(r"agent: stepped 1,760 bars in [\d.,]+ s \([\d,]+ bars/s\)", lines[-1])


def test_agent_run_when_ctrl_c_then_says_where_it_stopped_and_the_resume_command(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FFE__")}
    env |= {"FFE__DATA__DIR": str(tmp_path), "FFE_CONFIG_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "ffe", *ARGS, "--speed", "150"]
    agent = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(iter(agent.stderr.readline, "")))
    reader.start()
    deadline = time.monotonic() + 60
    while not any(PROGRESS.match(line.strip()) for line in said):
        assert time.monotonic() < deadline, said
        assert agent.poll() is None, said
        time.sleep(0.05)

    agent.send_signal(signal.SIGINT)
    agent.wait(timeout=60)
    reader.join(timeout=10)  # stderr is the reader's alone: communicate() would take lines
    out = agent.stdout.read()

    assert agent.returncode == 0, said
    stopped = said[-1].strip()
    found = re.fullmatch(
        r"stopped by Ctrl-C after bar ([\d,]+) of 1,760 \(\d{4}-\d{2}-\d{2}\); resume with: (.+)",
        stopped,
    )
    assert found, said
    assert found.group(2) == "ffe " + " ".join([*ARGS, "--speed", "150"])
    assert "traceback" not in "".join(said).lower()
    at = int(found.group(1).replace(",", ""))
    assert 0 < at < 1760
    assert "stepped" in out

    resumed = subprocess.run(
        [sys.executable, "-m", *found.group(2).split(), "--speed", "0", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(resumed.stdout)
    assert report["resumed"] is True
    assert report["first_bar"] == at
    assert report["status"] == "finished"
