"""A command every N seconds, for supervisord (which has no timers): the bare-metal stack's
``backup`` program runs ``ffe backup --keep K`` with it, as ffe-backup.timer does under systemd
and the chart's CronJob on Kubernetes.

    python scheduler.py --every 3600 --retry 15 --status DIR/backups/scheduler.json -- CMD ...

The first run starts at once; a failed run is tried again after ``--retry`` seconds (never
sooner), a good one after ``--every``. After each run ``--status`` holds {"ok", "returncode",
"started", "finished", "output"} (the stack's health check reads it). SIGTERM ends the wait
at once; a run in progress is ended with it.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, required=True, help="seconds between good runs")
    parser.add_argument("--retry", type=float, default=15, help="seconds after a failed run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take")
    parser.add_argument("--status", type=Path, required=True, help="the JSON status file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (after --)")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    while not stopping.is_set():
        started = datetime.now(UTC)
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.timeout, check=False
            )
            ok, code, output = done.returncode == 0, done.returncode, done.stdout + done.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, code, output = False, -1, f"{type(exc).__name__}: {exc}"
        status = {
            "ok": ok,
            "returncode": code,
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "output": output[-2000:],
        }
        args.status.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.status.with_name(args.status.name + ".tmp")
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        tmp.replace(args.status)
        print(f"{status['finished']} {'ok' if ok else 'FAILED'} ({code}) {output[-300:]}")
        sys.stdout.flush()
        stopping.wait(args.every if ok else min(args.retry, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
