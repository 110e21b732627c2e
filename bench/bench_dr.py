"""Disaster recovery drill on the bare-metal stack: RTO and RPO of each way back after the
journal's PostgreSQL is lost (deploy/baremetal/dr.py; figures in bench/README.md, "Stack:
disaster recovery").

    .venv/bin/python -m bench.bench_dr [--port-base 49100] [--standby-port 49130]
                                       [--backup-interval 20] [--out bench/results/dr.json]

With the stack up and the agent deciding (2 bars a second, window 60), in this order:

1. point-in-time recovery: a base backup (pg_basebackup) at the start, a minute of trading
   (the WAL archived every archive_timeout, 30 s), then the cluster destroyed (SIGKILL, data
   folder deleted), the base backup copied back and the archive replayed to its end;
2. restore from a dump: two scheduled backups (the stack's ``backup`` program, ``ffe backup
   --keep 3`` every ``--backup-interval`` seconds), the cluster destroyed, a new one made
   (initdb) and the newest dump restored (``ffe restore``);
3. failover: a streaming standby (pg_basebackup -R) on ``--standby-port``, the primary
   destroyed, the standby promoted, PgBouncer and the direct-URL processes pointed at it.

RTO: the disaster to every process healthy and the agent journaling a decision again. RPO:
seconds of the journal's decisions (the agent writes one a bar) lost. The machine's load
average is recorded with each figure (2 cores, shared with other work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "baremetal"))

import dr  # noqa: E402

from stack import Stack  # noqa: E402


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def trade(stack: Stack, seconds: float) -> None:
    """Let the agent run; the journal grows by about 2 decisions a second."""
    print(f"  trading {seconds:.0f} s ...", flush=True)
    time.sleep(seconds)


def wait_deciding(stack: Stack, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while dr.journal_mark(stack.urls.postgres).decisions < 5:
        if time.monotonic() > deadline:
            raise SystemExit("the agent made no decision: " + "\n".join(stack.log_tail("agent")))
        time.sleep(2)


def report(recovery: dr.Recovery, extra: dict[str, Any]) -> dict[str, Any]:
    row = {**recovery.as_dict(), "load": load(), **extra}
    print(f"  {json.dumps(row)}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-base", type=int, default=49100)
    parser.add_argument("--standby-port", type=int, default=49130)
    parser.add_argument("--backup-interval", type=float, default=20)
    parser.add_argument("--trade", type=float, default=60, help="seconds before each disaster")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dr.json")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="ffe-dr-"))
    folder.chmod(0o755)
    stack = Stack(
        folder,
        port_base=args.port_base,
        api_processes=2,
        agent_speed=2,
        agent_params={"window": "60"},
        backup_interval=args.backup_interval,
        backup_keep=3,
    )
    rows: list[dict[str, Any]] = []
    standby: dr.Standby | None = None
    try:
        started = time.monotonic()
        stack.up(timeout=300)
        print(f"stack up in {time.monotonic() - started:.0f} s (load {load()})", flush=True)
        wait_deciding(stack)

        print("point-in-time recovery", flush=True)
        base = dr.base_backup(stack)
        trade(stack, args.trade)
        pitr = dr.restore_pitr(stack, base)
        rows.append(report(pitr, {"archive_timeout_s": 30}))

        print("restore from the newest scheduled dump", flush=True)
        dumps = dr.wait_backups(stack, 2, timeout=args.backup_interval * 4 + 60)
        kept = len(dumps)
        trade(stack, args.backup_interval / 2)
        newest = dr.newest_backup(stack)
        dump = dr.restore_from_dump(stack, newest)
        rows.append(
            report(
                dump,
                {
                    "backup_interval_s": args.backup_interval,
                    "backups_kept": kept,
                    "backup": newest.name,
                },
            )
        )

        print("failover to a streaming standby", flush=True)
        wait_deciding(stack)
        standby = dr.Standby(stack, args.standby_port).create()
        trade(stack, args.trade / 2)
        over = dr.failover(stack, standby)
        rows.append(report(over, {"replication": "asynchronous"}))
    finally:
        if standby is not None:
            standby.stop()
        killed = stack.down()
        if killed:
            print(f"killed leftovers: {killed}")
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"drills": rows}, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
