"""Part 2 of ``bench_scaleout``: how long a job waits between its submission and an idle
``ffe worker`` taking it, for each way a worker learns of new jobs.

One stack per setup, all started at once and idle but for the job being measured:

- ``sqlite``: SQLite journal, no Redis; the worker looks every 0.1 s (``jobs.poll_s`` unset);
- ``sqlite+redis``: the same with Redis; submissions are published on the bus and wake it;
- ``postgresql``: a scratch PostgreSQL database; ``NOTIFY`` wakes the worker's ``LISTEN``;
- ``postgresql+redis``: both carriers.

Each submission is a tiny backtest (``sma_cross`` 10/20 on the second half of 2018 of the
bundled S&P 500) through ``POST /api/v1/backtests``; the pick-up time runs from just before
the client sends it to the job's ``started_at``, which the worker writes in the same
statement that claims the job (the same machine's clock). The job's process starts after
that (a fresh interpreter: see docs/api.md), so ``started_at`` is the moment the job left the
queue, not the moment its work began. The bench measures the pick-up, not the job: once the
job has left the queue it is cancelled (the worker ends its processes at its next heartbeat,
every second here instead of 5 s), and the client waits until the worker's own ``/metrics``
shows no job running, then a random 0.2 to 0.5 s, so the worker is idle at every submission.
The setups take turns, one submission each, the order rotating.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.scaleout_stack import (
    POLL_S,
    Stack,
    StackSpec,
    journal_time,
    open_stack,
    postgres_database,
)

BACKTEST = {
    "strategy": "sma_cross",
    "symbols": ["SP500"],
    "params": {"fast": 10, "slow": 20},
    "start": "2018-07-01",
    "end": "2018-12-31",
}
P99_TARGET_MS = 200.0
WARMUP = 3  # untimed submissions per setup: the LISTEN is in place, the API warm
JOB_TIMEOUT_S = 120.0
GAP_S = (0.2, 0.5)


def stack_specs(redis_urls: list[str] | None, postgres: list[str] | None) -> list[StackSpec]:
    """The setups to measure: SQLite always, with Redis and PostgreSQL when given. Heartbeats
    every second, so a cancelled job's processes end within a second."""
    beat = {"FFE__JOBS__HEARTBEAT_S": "1"}
    specs = [StackSpec("sqlite", settings=beat)]
    if redis_urls:
        specs.append(StackSpec("sqlite+redis", redis_url=redis_urls[0], settings=beat))
    if postgres:
        specs.append(StackSpec("postgresql", database_url=postgres[0], settings=beat))
        if redis_urls:
            specs.append(
                StackSpec(
                    "postgresql+redis",
                    database_url=postgres[1],
                    redis_url=redis_urls[1],
                    settings=beat,
                )
            )
    return specs


def submit_once(stack: Stack) -> dict[str, Any]:
    """Submit the backtest and wait until it leaves the queue; then cancel it and wait until
    the worker runs nothing. Its times, in ms from the submit."""
    sent = time.time()
    job_id = stack.post("/api/v1/backtests", BACKTEST)["id"]
    answered = time.time()
    job = stack.wait_job(job_id, lambda job: job["status"] != "queued", JOB_TIMEOUT_S, "claimed")
    stack.cancel(job_id)
    wait_idle(stack)
    return {
        "pickup_ms": (journal_time(job["started_at"]) - sent) * 1e3,
        "submit_ms": (answered - sent) * 1e3,
        "attempts": job["attempts"],
    }


_RUNNING = re.compile(r'^ffe_worker_jobs\{[^}]*state="running"[^}]*\} (\S+)$', re.MULTILINE)


def wait_idle(stack: Stack) -> None:
    """Until the stack's worker runs no job, as its own /metrics says (its live count)."""
    assert stack.worker is not None
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        scrape = stack.client.get(stack.worker.url + "/metrics").text
        running = [float(value) for value in _RUNNING.findall(scrape)]
        if running and not any(running):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"{stack.spec.name}: the worker still runs a job after {JOB_TIMEOUT_S} s")


def measure(folder: Path, redis_urls: list[str] | None, args: Any) -> dict[str, Any]:
    """Start one stack per setup, submit to them in turn, stop everything."""
    with ExitStack() as stack:
        postgres = None
        if not args.skip_postgres:
            postgres = [stack.enter_context(postgres_database(args.postgres_url)) for _ in range(2)]
        specs = stack_specs(redis_urls, postgres)
        print(f"pick-up: starting {', '.join(s.name for s in specs)}", flush=True)
        stacks = [open_stack(stack, folder / spec.name.replace("+", "-"), spec) for spec in specs]
        for running in stacks:
            for _ in range(WARMUP):
                submit_once(running)
        samples: dict[str, list[dict[str, Any]]] = {s.spec.name: [] for s in stacks}
        spacing = random.Random(15)  # the same gaps on every run of the bench
        for number in range(args.submissions):
            shift = number % len(stacks)
            for running in stacks[shift:] + stacks[:shift]:
                time.sleep(spacing.uniform(*GAP_S))
                samples[running.spec.name].append(submit_once(running))
            if (number + 1) % 25 == 0:
                print(f"pick-up: {number + 1} of {args.submissions} submissions each", flush=True)
    return {"samples": samples, **summarise(samples, args.rounds)}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and p99 (linear between the ordered samples), the mean and the extremes."""
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def summarise(samples: dict[str, list[dict[str, Any]]], rounds: int) -> dict[str, Any]:
    """Percentiles of each setup over all its submissions, and p99 over each of ``rounds``
    consecutive blocks of them (how much it moves)."""
    setups = {}
    for name, these in samples.items():
        pickup = [s["pickup_ms"] for s in these]
        size = max(2, len(pickup) // max(rounds, 1))
        blocks = [pickup[i : i + size] for i in range(0, len(pickup) - size + 1, size)]
        summary = percentiles(pickup)
        setups[name] = {
            "submissions": len(pickup),
            "pickup_ms": summary,
            "p99_ms_by_round": [percentiles(block)["p99"] for block in blocks],
            "submit_call_ms": percentiles([s["submit_ms"] for s in these]),
            "retried": sum(s["attempts"] != 1 for s in these),
            "target_ms": P99_TARGET_MS,
            "passed": summary["p99"] < P99_TARGET_MS,
        }
    return {"setups": setups}


def rows(summary: dict[str, Any]) -> list[list[object]]:
    """The table lines of part 2."""
    found: list[list[object]] = []
    for name, setup in summary["setups"].items():
        pickup = setup["pickup_ms"]
        by_round = ", ".join(f"{v:.0f}" for v in setup["p99_ms_by_round"])
        found.append(
            [
                f"pick-up {name}: p50 / p95 / p99 ms (p99 by round)",
                f"{pickup['p50']:.1f} / {pickup['p95']:.1f} / {pickup['p99']:.1f} ({by_round})",
                f"p99 < {P99_TARGET_MS:.0f}",
                "PASS" if setup["passed"] else "FAIL",
            ]
        )
    return found


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "submissions_per_setup": args.submissions,
        "warmup_per_setup": WARMUP,
        "backtest": BACKTEST,
        "gap_s": list(GAP_S),
        "rounds": args.rounds,
        "job_heartbeat_s": 1,
        "measured": "client's time before POST /api/v1/backtests to the job's started_at "
        "(written by the worker's claim); the job is then cancelled",
    }
