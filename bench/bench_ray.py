"""Ray scaling: a sweep of at least 10,000 points on a 2-node local Ray cluster (1 CPU each)
against the local process pool with 2 workers, on the same cores; target: Ray at least 85%
of the pool's points per second, connection and data upload included.

Both paths of a sweep are measured: each point through the engine (``batch=False``, many small
tasks) and on the batch kernel (``sma_cross`` grids: a few tasks of thousands of points). Each
round times both executors, taking turns: the pool from its spawn to the last row, Ray from
``ray.init`` (a new driver each round, so its worker processes start anew as well) and
``ray.put`` of the market to the last row. The cluster itself is started once, before the
rounds, as a cluster would be running already. The per-task overhead is measured with no-op
work: one task at a time (round trip), 2,000 tasks at once (per task), and the executor's
batched map over 100,000 items (per item); the pool's per item for comparison. From those
figures, a projected speedup for 10 and 100 workers (Amdahl, with the measured serial part).

    python -m bench.bench_ray [--rounds N] [--fast N] [--slow N] [--base-port P] [--no-write]
                              [--strict]

Ports: the cluster takes --base-port (46500) to +299, never Redis's 6379.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ffe_build, machine, table, utc_now, verdict, versions, write_result

TARGET_RATIO = 0.85
ROOT = Path(__file__).resolve().parents[1]


def noop(shared: None, item: int) -> int:
    """No work: what is left of a task's time is the executor's overhead."""
    return item


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed sweeps of each executor")
    parser.add_argument("--fast", type=int, default=100, help="fast SMA values (from 5)")
    parser.add_argument("--slow", type=int, default=100, help="slow SMA values (from 110)")
    parser.add_argument("--base-port", type=int, default=46500, help="the cluster's first port")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 below {TARGET_RATIO:.0%}")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON result")
    return parser.parse_args(argv)


def sweep_setup(args: argparse.Namespace) -> tuple[Any, list[dict[str, Any]], Any, Any]:
    from ffe import bootstrap
    from ffe.backtest.sweep import combinations
    from ffe.config import Settings
    from ffe.service.markets import MarketSpec, load_bars

    settings = Settings()
    market = load_bars(bootstrap.components(settings), MarketSpec(("SP500",)))
    grid = combinations(
        {"fast": list(range(5, 5 + args.fast)), "slow": list(range(110, 110 + args.slow))}
    )
    return market, grid, bootstrap.backtest_config(settings), bootstrap.risk_engine(settings)


PATHS = {"engine": False, "kernel": True}  # run_sweep(batch=...) of each path


def timed_sweep(
    setup: tuple[Any, ...], make_executor: Any, batch: bool = False
) -> tuple[float, list[Any]]:
    """Seconds from making the executor (connecting, spawning) to the last row, and the rows."""
    from ffe.backtest.sweep import run_sweep

    market, grid, config, risk = setup
    start = time.perf_counter()
    executor = make_executor()
    rows = run_sweep(market, "sma_cross", grid, config, risk, executor=executor, batch=batch)
    return time.perf_counter() - start, [row.flat() for row in rows]


def sweeps(setup: tuple[Any, ...], address: str, rounds: int, batch: bool) -> dict[str, Any]:
    """Both executors, taking turns; every Ray round connects anew. ``batch``: the points on
    the batch kernel (a few large tasks), else each through the engine (many small ones)."""
    import ray

    from ffe.compute import LocalExecutor
    from ffe.compute.ray_executor import RayExecutor

    cases = {
        "pool": lambda: LocalExecutor(2),
        "ray": lambda: RayExecutor(address).connect(),
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    rows: dict[str, list[Any]] = {}
    for number in range(rounds):
        for name in list(cases) if number % 2 == 0 else list(cases)[::-1]:
            ray.shutdown()  # the Ray round starts from no connection
            took, rows[name] = timed_sweep(setup, cases[name], batch)
            seconds[name].append(took)
            print(f"round {number + 1}: {name} {took:.1f} s", file=sys.stderr)
    points = len(setup[1])
    found = {
        name: {"seconds": s, "points_per_s": points / statistics.median(s)}
        for name, s in seconds.items()
    }
    found["identical_rows"] = rows["pool"] == rows["ray"]
    return found


def serial_parts(setup: tuple[Any, ...], address: str) -> dict[str, float]:
    """One point's work in this process (for reference: the projection takes the points' work
    from the Ray sweep itself), and what a Ray run pays before its first task."""
    import ray

    from ffe.compute import LocalExecutor
    from ffe.compute.ray_executor import RayExecutor

    market, grid, config, risk = setup
    sample = grid[:: max(1, len(grid) // 500)]
    took, _ = timed_sweep((market, sample, config, risk), lambda: LocalExecutor(1))
    ray.shutdown()
    start = time.perf_counter()
    RayExecutor(address).connect()
    connected = time.perf_counter()
    ray.get(ray.put(market))
    uploaded = time.perf_counter()
    return {
        "point_s": took / len(sample),
        "connect_s": connected - start,
        "upload_s": uploaded - connected,
    }


def overheads(address: str) -> dict[str, float]:
    """Per task and per item costs of no-op work, on Ray and on the pool."""
    import ray

    from ffe.compute import LocalExecutor, in_order
    from ffe.compute.ray_executor import RayExecutor

    executor = RayExecutor(address).connect()
    task = ray.remote(num_cpus=1)(noop)
    ray.get([task.remote(None, i) for i in range(20)])  # workers up
    trips = []
    for i in range(200):
        start = time.perf_counter()
        ray.get(task.remote(None, i))
        trips.append(time.perf_counter() - start)
    start = time.perf_counter()
    ray.get([task.remote(None, i) for i in range(2_000)])
    per_task = (time.perf_counter() - start) / 2_000
    start = time.perf_counter()
    in_order(executor.map(noop, range(100_000), None), 100_000)
    ray_item = (time.perf_counter() - start) / 100_000
    start = time.perf_counter()
    in_order(LocalExecutor(2).map(noop, range(20_000), None), 20_000)
    pool_item = (time.perf_counter() - start) / 20_000
    return {
        "ray_task_round_trip_s": statistics.median(trips),
        "ray_task_s_2000_at_once": per_task,
        "ray_map_item_s_batched": ray_item,
        "pool_map_item_s": pool_item,
    }


def projection(
    ray_s: float, points: int, parts: dict[str, float], costs: dict[str, float], workers: int = 2
) -> dict[str, Any]:
    """Amdahl from the measured Ray sweep: its serial part (connecting, the upload, the driver
    taking each row, at the no-op map's cost per item) stays, the rest (the points' work with
    the per-task costs, on ``workers`` CPUs, under whatever else ran on the machine then)
    divides by the workers. Wall time and speedup against one worker, for 1, 2, 10 and 100."""
    driver = points * costs["ray_map_item_s_batched"]
    serial = parts["connect_s"] + parts["upload_s"] + driver
    work = max(0.0, ray_s - serial) * workers  # CPU-seconds of the points, as measured
    fraction = serial / (serial + work)
    curve = {}
    for n in (1, 2, 10, 100):
        wall = serial + work / n
        curve[str(n)] = {"wall_s": wall, "speedup": 1 / (fraction + (1 - fraction) / n)}
    return {"serial_s": serial, "parallel_work_s": work, "serial_fraction": fraction, "by": curve}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from ffe.compute.ray_local import LocalRayCluster

    setup = sweep_setup(args)
    points = len(setup[1])
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    with LocalRayCluster(args.base_port, nodes=2, env={"PYTHONPATH": path}) as cluster:
        cluster_s = time.perf_counter() - started
        before = machine()
        found = {path: sweeps(setup, cluster.address, args.rounds, b) for path, b in PATHS.items()}
        parts = serial_parts(setup, cluster.address)
        costs = overheads(cluster.address)
    ratios = {p: f["ray"]["points_per_s"] / f["pool"]["points_per_s"] for p, f in found.items()}
    result = {
        "date": utc_now(),
        "build": ffe_build(),
        "versions": versions("ray", "numpy"),
        "machine_before": before,
        "machine_after": machine(),
        "points": points,
        "cluster_start_s": cluster_s,
        "sweeps": found,
        "ratio_ray_to_pool": ratios,
        "target": TARGET_RATIO,
        "serial_parts": parts,
        "overheads": costs,
        "projection": {
            path: projection(statistics.median(f["ray"]["seconds"]), points, parts, costs)
            for path, f in found.items()
        },
    }
    report(result)
    if not args.no_write:
        print(f"written to {write_result('ray', result)}", file=sys.stderr)
    return 1 if args.strict and min(ratios.values()) < TARGET_RATIO else 0


def report(result: dict[str, Any]) -> None:
    for path, sweeps in result["sweeps"].items():
        rows = [
            [name, case["points_per_s"], ", ".join(f"{s:.1f}" for s in case["seconds"])]
            for name, case in ((name, sweeps[name]) for name in ("pool", "ray"))
        ]
        print(f"{path} path:")
        print(table(["executor", "points/s", "seconds by round"], rows))
        ratio = result["ratio_ray_to_pool"][path]
        print(f"ray / pool: {ratio:.2f} (target {TARGET_RATIO}): {verdict(ratio >= TARGET_RATIO)}")
        print(f"identical rows: {sweeps['identical_rows']}")
        curve = result["projection"][path]["by"]
        print("projected (Amdahl, not measured):")
        print(table(["workers", "speedup"], [[w, c["speedup"]] for w, c in curve.items()]))
    print(table(["overhead", "seconds"], list(result["overheads"].items())))


if __name__ == "__main__":
    raise SystemExit(main())
