"""How fast the simple ``ffe`` commands answer: each one started as a new process, as a user
types it, against a scratch data directory (SQLite journal made by the first command).

With ``--before REV`` the same commands also run on the ``src/`` of an older revision
(extracted with ``git archive`` into a temporary directory), taking turns with this tree, so
both see the same machine load; the ratio is before / now. Without it, the ratio is against
the figures of the issue that asked for a quick CLI (issue 21, measured on a busier day).

    python -m bench.bench_cli [--before REV] [--repeats N] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path

from bench.common import Timing, interleaved, machine, table, utc_now, versions, write_result

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "config show": ["config", "show"],
    "keys create": ["keys", "create", "bench"],
    "health": ["health"],
    "runs list": ["runs", "list"],
}
# Issue 21's figures (seconds; config show measured as 1.1-1.8 s: its midpoint).
ISSUE_FIGURES = {"config show": 1.45, "keys create": 3.8, "health": 5.1, "runs list": 3.0}
TARGET_S = {"--help": 0.5, "config show": 0.5}


def _runner(src: Path, data_dir: Path, argv: Sequence[str]) -> Callable[[], int]:
    env = {**os.environ, "PYTHONPATH": str(src), "FFE__DATA__DIR": str(data_dir)}

    def run() -> int:
        done = subprocess.run(
            [sys.executable, "-m", "ffe", *argv],
            env=env,
            cwd=data_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return done.returncode

    return run


def _extract_src(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _cases(trees: dict[str, Path], scratch: Path) -> dict[str, Callable[[], int]]:
    cases = {}
    for label, src in trees.items():
        data_dir = scratch / label
        data_dir.mkdir()
        _runner(src, data_dir, ["runs", "list"])()  # make the journal before timing
        for name, argv in COMMANDS.items():
            cases[f"{name} [{label}]"] = _runner(src, data_dir, argv)
    return cases


def _rows(timings: dict[str, Timing], before: bool) -> list[list[object]]:
    rows: list[list[object]] = []
    for name in COMMANDS:
        now = timings[f"{name} [now]"]
        then = timings[f"{name} [before]"].median if before else ISSUE_FIGURES.get(name)
        ratio = None if then is None else then / now.median
        target = TARGET_S.get(name)
        verdict = "" if target is None else ("PASS" if now.median < target else "FAIL")
        rows.append([name, now.median, then or "-", ratio or "-", verdict])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="a git revision to compare with (its src/)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ffe-bench-cli-") as tmp:
        scratch = Path(tmp)
        trees = {"now": ROOT / "src"}
        if args.before:
            trees["before"] = _extract_src(args.before, scratch / "old")
        timings = interleaved(_cases(trees, scratch), repeats=args.repeats, warmup=1)
    rows = _rows(timings, before=bool(args.before))
    against = f"src/ at {args.before}" if args.before else "issue 21's figures"
    print(f"median seconds of {args.repeats} runs; ratio = before / now, before = {against}")
    print(table(["command", "now s", "before s", "ratio", "< 0.5 s"], rows))
    if not args.no_write:
        path = write_result(
            "cli",
            {
                "date": utc_now(),
                "machine": machine(),
                "versions": versions("typer", "pydantic", "sqlalchemy"),
                "before": against,
                "timings": {name: t.as_dict() for name, t in timings.items()},
            },
        )
        print(f"written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
