"""Part 1 of ``bench_scaleout``: the API's latency while a 2,000-point sweep runs, on a separate
``ffe worker`` and inside the API's processes, against the same API with nothing running.

Two stacks run side by side on the same SQLite-journal-plus-Redis setup, each with 2 API
processes: ``apart`` (``ffe serve`` and an ``ffe worker``) and ``inside`` (``ffe serve
--jobs``: the API's processes claim the jobs and start their job processes, as before jobs left
the API). Three conditions take turns every round, the order reversed every other round:

- ``idle``: ``apart`` with nothing running;
- ``worker``: ``apart`` while its worker runs the sweep;
- ``in_api``: ``inside`` while one of its API processes runs the sweep.

A sweep run submits the sweep through ``POST /api/v1/sweeps``, waits until the job is running
with some points done (its pool is up), loads the API with wrk (warm-up, then the timed run),
checks the sweep is still running, and cancels it (``POST /api/v1/jobs/{id}/cancel``),
waiting until its processes are gone. The job's process group is read around the timed run:
how many processes it has and the CPU seconds they used, so the sweep's share of the machine
is on record.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.bench_api import CONNECTIONS, PORTFOLIO, THREADS, _wrk
from bench.scaleout_stack import JobProcesses, Stack, StackSpec, open_stack

# momentum lookback 20..119 x rebalance 1..20 on the bundled S&P 500: 100 x 20 = 2,000
# backtests, each through the engine. Not sma_cross: its grids run on the batch kernel
# (ffe.backtest.kernel), a 2,000-point sweep in about a second, too short to load the API
# through the timed window.
SWEEP = {
    "strategy": "momentum",
    "symbol": "SP500",
    "grid": {"lookback": list(range(20, 120)), "rebalance": list(range(1, 21))},
}
SWEEP_POINTS = 2_000
RATIO_TARGET = 1.5  # p99 with the sweep on a worker, over p99 with nothing running
CONDITIONS = ("idle", "worker", "in_api")
SWEEP_START_S = 180.0  # submit to points done, on a busy machine
SWEEP_GONE_S = 30.0  # cancel to the last of its processes gone


def stack_specs(redis_urls: list[str], api_jobs_nice: int) -> tuple[StackSpec, StackSpec]:
    """The two stacks: ``apart`` (API and a worker) and ``inside`` (``ffe serve --jobs``).
    Job heartbeats every second, so the progress read through the API is fresh."""
    beat = {"FFE__JOBS__HEARTBEAT_S": "1"}
    apart = StackSpec(
        "apart", redis_url=redis_urls[0], api_workers=2, paper_run=True, settings=beat
    )
    inside = StackSpec(
        "inside",
        redis_url=redis_urls[1],
        api_workers=2,
        jobs_in_api=True,
        worker=False,
        paper_run=True,
        settings={**beat, "FFE__JOBS__NICE": str(api_jobs_nice)},
    )
    return apart, inside


def _sweep_state(stack: Stack, job_id: str, groups: set[int], jobs: JobProcesses) -> dict[str, Any]:
    job = stack.job(job_id)
    return {
        "at": time.monotonic(),
        "status": job["status"],
        "progress": job["progress"],
        "processes": len(jobs.members(groups)),
        "cpu_s": jobs.cpu_s(groups),
    }


def _start_sweep(stack: Stack, jobs: JobProcesses) -> tuple[str, set[int]]:
    """Submit the sweep; once it runs with points done, its id and its job process groups."""
    job_id = stack.post("/api/v1/sweeps", SWEEP)["id"]
    stack.wait_job(
        job_id,
        lambda job: job["status"] == "running" and job["progress"] > 0,
        SWEEP_START_S,
        "running with points done",
    )
    groups = jobs.groups(stack.pids())
    if not groups:
        raise RuntimeError(f"{stack.spec.name}: sweep {job_id} runs, but no job process was found")
    return job_id, groups


def _stop_sweep(stack: Stack, job_id: str, groups: set[int], jobs: JobProcesses) -> str:
    """Cancel the sweep and wait until its processes are gone; its final status."""
    stack.cancel(job_id)
    job = stack.wait_job(job_id, lambda job: job["status"] != "running", SWEEP_GONE_S, "cancelled")
    if not jobs.wait_gone(groups, SWEEP_GONE_S):
        raise RuntimeError(f"{stack.spec.name}: sweep {job_id} still has processes after cancel")
    return str(job["status"])


def one_run(
    wrk: str, stack: Stack, sweep: bool, everyone: list[Stack], jobs: JobProcesses, args: Any
) -> dict[str, Any]:
    """One wrk load of ``stack``'s portfolio route (warm-up, then timed), with the sweep
    running on it throughout when ``sweep``."""
    for each in everyone:  # no backlog from the previous run slows this one
        each.api.settle()
    url, header = stack.api.url + PORTFOLIO, f"Authorization: Bearer {stack.key}"
    load_1m = os.getloadavg()[0]
    job_id, groups = _start_sweep(stack, jobs) if sweep else ("", set())
    _wrk(wrk, url, args.warmup, header)
    before = _sweep_state(stack, job_id, groups, jobs) if sweep else None
    run = _wrk(wrk, url, args.duration, header)
    run["load_1m_before"] = load_1m
    if before is not None:
        after = _sweep_state(stack, job_id, groups, jobs)
        scheduling = {
            "api": jobs.scheduling(stack.pids()[0]),
            "job": [jobs.scheduling(group) for group in sorted(groups)],
        }
        status = _stop_sweep(stack, job_id, groups, jobs)
        run["sweep"] = {**_sweep_record(job_id, before, after, status), "scheduling": scheduling}
    return run


def _sweep_record(
    job_id: str, before: dict[str, Any], after: dict[str, Any], status: str
) -> dict[str, Any]:
    seconds = after["at"] - before["at"]
    return {
        "job": job_id,
        "before": {k: v for k, v in before.items() if k != "at"},
        "after": {k: v for k, v in after.items() if k != "at"},
        "ended_as": status,
        # running before and after the timed run, not finished, its processes alive
        "covered": before["status"] == after["status"] == "running"
        and after["progress"] < 1
        and after["processes"] > 0,
        "points_in_window": round((after["progress"] - before["progress"]) * SWEEP_POINTS),
        "cpu_cores_in_window": (after["cpu_s"] - before["cpu_s"]) / seconds if seconds else None,
    }


def measure(wrk: str, folder: Path, redis_urls: list[str], args: Any) -> dict[str, Any]:
    """Start both stacks, run every condition once a round, stop everything."""
    apart_spec, inside_spec = stack_specs(redis_urls, args.api_jobs_nice)
    with ExitStack() as stack:
        jobs = stack.enter_context(JobProcesses())
        print("latency: seeding and starting two stacks (2 API processes each)", flush=True)
        apart = open_stack(stack, folder / "apart", apart_spec)
        inside = open_stack(stack, folder / "inside", inside_spec)
        plan = {"idle": (apart, False), "worker": (apart, True), "in_api": (inside, True)}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONDITIONS}
        for number in range(args.rounds):
            for name in CONDITIONS if number % 2 == 0 else CONDITIONS[::-1]:
                target, sweep = plan[name]
                run = one_run(wrk, target, sweep, [apart, inside], jobs, args)
                runs[name].append(run)
                _say(number, name, run)
    return {"rounds": runs, **summarise(runs)}


def _say(number: int, name: str, run: dict[str, Any]) -> None:
    sweep = run.get("sweep")
    extra = ""
    if sweep is not None:
        extra = (
            f"; sweep {'ran throughout' if sweep['covered'] else 'DID NOT run throughout'}: "
            f"{sweep['points_in_window']} points, {sweep['cpu_cores_in_window']:.2f} cores"
        )
    print(
        f"round {number + 1} {name:>6}: {run['requests_per_s']:7.0f} req/s, p99 "
        f"{_ms(run['p99_ms'])} ms, errors {run['errors']}{extra}",
        flush=True,
    )


def _ms(value: float | None) -> str:
    return "none completed" if value is None else f"{value:.1f}"


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    value = statistics.median(run[key] or math.inf for run in runs)
    return value if math.isfinite(value) else None


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds per condition, and the p99 ratios against ``idle``."""
    conditions = {
        name: {
            "requests_per_s": statistics.median(run["requests_per_s"] for run in these),
            "p99_ms": _median(these, "p99_ms"),
            "p50_ms": _median(these, "p50_ms"),
            "p99_ms_by_round": [run["p99_ms"] for run in these],
            "requests_per_s_by_round": [run["requests_per_s"] for run in these],
            "errors": sum(run["errors"] for run in these),
            "sweep_not_throughout": sum(
                not run["sweep"]["covered"] for run in these if "sweep" in run
            ),
        }
        for name, these in runs.items()
    }
    idle = conditions["idle"]["p99_ms"]

    def ratio(name: str) -> dict[str, Any]:
        value = conditions[name]["p99_ms"]
        by_round = [
            (s["p99_ms"] or math.inf) / i["p99_ms"] if i["p99_ms"] else None
            for s, i in zip(runs[name], runs["idle"], strict=True)
        ]
        return {
            "value": value / idle if value and idle else None,
            "by_round": by_round,
            "rate_ratio": conditions[name]["requests_per_s"] / conditions["idle"]["requests_per_s"],
        }

    worker, in_api = ratio("worker"), ratio("in_api")
    valid = conditions["worker"]["sweep_not_throughout"] == 0
    worker.update(
        target=RATIO_TARGET,
        passed=valid and worker["value"] is not None and worker["value"] <= RATIO_TARGET,
    )
    return {"conditions": conditions, "worker_over_idle": worker, "in_api_over_idle": in_api}


def rows(summary: dict[str, Any]) -> list[list[object]]:
    """The table lines of part 1."""
    found: list[list[object]] = []
    for name in CONDITIONS:
        each = summary["conditions"][name]
        p99s = ", ".join(_ms(v) for v in each["p99_ms_by_round"])
        found.append(
            [
                f"{name}: p99 ms (rounds), req/s",
                f"{_ms(each['p99_ms'])} ({p99s}), {each['requests_per_s']:.0f}",
                "—",
                "—",
            ]
        )
    labels = {"worker_over_idle": "worker / idle", "in_api_over_idle": "in_api / idle"}
    for key, label in labels.items():
        ratio = summary[key]
        value = "n/a" if ratio["value"] is None else f"{ratio['value']:.2f}"
        by_round = ", ".join("n/a" if r is None else f"{r:.2f}" for r in ratio["by_round"])
        target = f"<= {RATIO_TARGET}" if "target" in ratio else "—"
        result = ("PASS" if ratio["passed"] else "FAIL") if "passed" in ratio else "—"
        found.append([f"p99 {label} (rounds)", f"{value} ({by_round})", target, result])
    return found


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "api_workers": 2,
        "connections": CONNECTIONS,
        "threads": THREADS,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "sweep": SWEEP,
        "in_api_jobs_nice": args.api_jobs_nice,
        "job_heartbeat_s": 1,
    }
