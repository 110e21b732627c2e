"""Scale-out: the API's latency while a sweep runs elsewhere, and how fast an idle worker picks
up a job. Real processes on loopback (``ffe serve``, ``ffe worker``), loaded with wrk.

1. Authenticated ``GET /api/v1/portfolio`` at 64 connections against ``ffe serve`` with 2 API
   processes (SQLite journal, Redis), with nothing running, with a 2,000-point sweep on a
   separate ``ffe worker``, and with the same sweep inside the API's processes (``ffe serve
   --jobs``); target: p99 with the sweep on a worker within 1.5x of p99 with nothing running
   (``scaleout_latency``).
2. Submit to running on an idle worker, for a SQLite journal with and without Redis and for
   PostgreSQL with and without Redis; target: p99 under 200 ms (``scaleout_pickup``).

Redis: the bench uses two databases of its own (``--redis-db N`` and N+1, which must be
empty; the keys left in them are deleted at the end, one by one). PostgreSQL: two scratch
``ffe_bench_*`` databases on ``--postgres-url``, dropped at the end. Every process the bench
starts is stopped on any exit, and job processes still alive are killed by process group.
Needs wrk (``apt-get install wrk``) for part 1.

    python -m bench.bench_scaleout [--rounds N] [--submissions N] [--json PATH] [--no-write]
                                   [--strict] [--skip-latency] [--skip-pickup]
                                   [--skip-postgres] [--no-redis]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import scaleout_latency, scaleout_pickup
from bench.bench_api import INSTALL_WRK, _interrupted, _wrk_version
from bench.bench_journal import DEFAULT_POSTGRES_URL
from bench.common import machine, table, utc_now, versions, write_result
from bench.scaleout_stack import redis_databases

DEFAULT_REDIS = "redis://127.0.0.1:6379"
DEFAULT_REDIS_DB = 11


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds; pick-up blocks")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each")
    parser.add_argument("--submissions", type=int, default=200, help="pick-ups per setup")
    parser.add_argument(
        "--api-jobs-nice",
        type=int,
        default=0,
        help="jobs.nice of `ffe serve --jobs` (default 0: job processes at the API's priority, "
        "as before jobs left the API)",
    )
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis server (no database)")
    parser.add_argument("--redis-db", type=int, default=DEFAULT_REDIS_DB, help="uses N and N+1")
    parser.add_argument("--no-redis", action="store_true", help="pick-up setups without Redis")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-pickup", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here, not bench/results")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def measure(wrk: str | None, args: argparse.Namespace) -> dict[str, Any]:
    """Both parts, each in a temporary folder, with the Redis databases checked and cleared."""
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ffe-bench-scaleout-") as name, ExitStack() as stack:
        folder = Path(name)
        redis_urls = None
        if not args.no_redis:
            redis_urls = stack.enter_context(redis_databases(args.redis, args.redis_db, 2))
        if wrk is not None and not args.skip_latency:
            if redis_urls is None:
                raise SystemExit(
                    "part 1 runs the API with Redis: drop --no-redis, or --skip-latency"
                )
            found["latency"] = scaleout_latency.measure(wrk, folder / "latency", redis_urls, args)
        if not args.skip_pickup:
            found["pickup"] = scaleout_pickup.measure(folder / "pickup", redis_urls, args)
    return found


def payload(found: dict[str, Any], wrk: str | None, args: argparse.Namespace, load: Any) -> Any:
    settings: dict[str, Any] = {}
    if "latency" in found:
        settings["latency"] = scaleout_latency.settings(args)
    if "pickup" in found:
        settings["pickup"] = scaleout_pickup.settings(args)
    return {
        "benchmark": "scaleout",
        "when": utc_now(),
        "machine": {**machine(), "load_average_at_start": load},
        "versions": {
            **versions("uvicorn", "uvloop", "redis", "asyncpg", "sqlalchemy", "psutil"),
            "wrk": None if wrk is None else _wrk_version(wrk),
        },
        "settings": settings,
        **found,
    }


def passed(found: dict[str, Any]) -> bool:
    checks = []
    if "latency" in found:
        checks.append(found["latency"]["worker_over_idle"]["passed"])
    if "pickup" in found:
        checks += [setup["passed"] for setup in found["pickup"]["setups"].values()]
    return all(checks)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = shutil.which("wrk")
    if wrk is None and not args.skip_latency:
        print(INSTALL_WRK + " (or --skip-latency)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    load = machine()["load_average_1_5_15"]
    try:
        found = measure(wrk, args)
    except KeyboardInterrupt:
        print("interrupted: processes stopped, nothing written", file=sys.stderr)
        return 130
    lines = []
    if "latency" in found:
        lines += scaleout_latency.rows(found["latency"])
    if "pickup" in found:
        lines += scaleout_pickup.rows(found["pickup"])
    print(table(["case", "measured", "target", "verdict"], lines))
    result = payload(found, wrk, args, load)
    print(f"load average at start {load}, at end {result['machine']['load_average_1_5_15']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")
    elif not args.no_write:
        print(f"written to {write_result('scaleout', result)}")
    return 1 if args.strict and not passed(found) else 0


if __name__ == "__main__":
    sys.exit(main())
