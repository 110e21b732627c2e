"""``ffe tune`` of 200 trials: wall time, through the same use case the command calls.

``sma_cross`` on the bundled S&P 500 daily bars (5,031), ``fast=5..60`` and ``slow=20..250``,
TPE with seed 0, the median pruner, batches of 8, the walk-forward's default ``train=750,
test=250`` on the first 80% of the bars and the last 20% held out; study storage in SQLite in a
temporary directory. Each case is a fresh study on the executor the settings give
(``Components.executor``: the local pool of ``--workers`` processes, 1 = in this process; a
cluster when configured), timed from the request to the outcome: loading the bars, starting
the workers, every trial, the best's holdout score, the deflated Sharpe ratio. Every case must
find the same best trial (same seed and batch size: the same study).

With ``--ray`` one more case runs the same study on a 2-node Ray cluster of one CPU each,
started on loopback (``ffe.compute.ray_local.LocalRayCluster``, ports from ``--base-port``), its
start not timed; the case is timed like the others, connecting to the cluster included.

    python -m bench.bench_tune [--trials 200] [--workers 1,2] [--ray] [--no-write] [--strict]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, table, utc_now, verdict, versions, write_result

TARGET_S = 60.0  # a 200-trial study on two cores should take about a minute at most
SPACE = ("fast=5..60", "slow=20..250")


ROOT = Path(__file__).resolve().parent.parent


def _run(trials: int, workers: int, directory: Path) -> tuple[float, dict[str, Any]]:
    import optuna

    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service import tuning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["FFE__DATA__DIR"] = str(directory)
    request = tuning.TuneRequest(
        "sma_cross", SPACE, trials=trials, batch_size=8, workers=workers, study=f"w{workers}"
    )
    start = time.perf_counter()
    outcome = tuning.run(bootstrap.components(load_settings()), request)
    return time.perf_counter() - start, outcome.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", default="1,2", help="comma-separated pool sizes")
    parser.add_argument("--ray", action="store_true", help="add a case on a 2-node Ray cluster")
    parser.add_argument("--base-port", type=int, default=46500, help="the Ray cluster's ports")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)
    before = machine()
    cases: dict[str, dict[str, Any]] = {}
    for workers in (int(w) for w in args.workers.split(",")):
        cases[f"workers={workers}"] = _case(args.trials, workers)
    if args.ray:
        cases["ray: 2 nodes x 1 CPU"] = _on_ray(args.trials, args.base_port)
    same_best = len({str(case["best"]) for case in cases.values()}) == 1
    fastest = min(case["wall_s"] for case in cases.values())
    passed = same_best and fastest <= TARGET_S
    rows = [
        (name, f"{c['wall_s']:.1f} s", f"{c['trials_per_s']:.1f}", c["counts"], c["best"]["params"])
        for name, c in cases.items()
    ]
    print(table(("case", "wall", "trials/s", "trials", "best"), rows))
    print(f"same best in every case: {same_best}; {verdict(passed)} (target <= {TARGET_S:.0f} s)")
    payload = {
        "benchmark": "tune",
        "date": utc_now(),
        "trials": args.trials,
        "space": list(SPACE),
        "machine_before": before,
        "machine_after": machine(),
        "versions": versions("numpy", "optuna", "sqlalchemy", "scipy"),
        "cases": cases,
        "same_best": same_best,
        "target_s": TARGET_S,
        "verdict": verdict(passed),
    }
    if not args.no_write:
        print(f"wrote {write_result('tune', payload)}")
    return 1 if args.strict and not passed else 0


def _case(trials: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        seconds, found = _run(trials, workers, Path(directory))
    return {
        "wall_s": seconds,
        "trials_per_s": trials / seconds,
        "counts": found["counts"],
        "best": found["best"],
        "holdout": None if found["holdout"] is None else found["holdout"]["value"],
        "deflated_sharpe": found["deflated_sharpe"],
    }


def _on_ray(trials: int, base_port: int) -> dict[str, Any]:
    """The study on a fresh 2-node cluster; the executor from the settings, as a user sets it."""
    from ffe.compute.ray_local import LocalRayCluster

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with LocalRayCluster(base_port, nodes=2, env={"PYTHONPATH": path}) as cluster:
        os.environ["FFE__COMPUTE__EXECUTOR"] = "ray"
        os.environ["FFE__COMPUTE__RAY_ADDRESS"] = cluster.address
        try:
            return _case(trials, 0)
        finally:
            del os.environ["FFE__COMPUTE__EXECUTOR"], os.environ["FFE__COMPUTE__RAY_ADDRESS"]


if __name__ == "__main__":
    sys.exit(main())
