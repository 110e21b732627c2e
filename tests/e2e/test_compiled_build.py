"""The optional compiled build works: the wheel built with the mypyc hook on (see
[tool.hatch.build.targets.wheel.hooks.mypyc] in pyproject.toml) loads its hot modules from C
extensions, and its backtests trade exactly like the pure-Python engine's.

The wheel is built from a copy of the tree (the hook compiles next to the sources it is given,
and a stray extension in src/ would shadow the .py files), unpacked into a temporary
directory and imported from there by a subprocess that uses this environment's dependencies.

Without a C compiler, the Python headers or the package index, the test skips and says why;
with CI=true it fails instead, so the compiled build cannot quietly go untested.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPILED = (
    "ffe.backtest.engine",
    "ffe.backtest.kernel",
    "ffe.risk.engine",
    "ffe.execution.simulated",
    "ffe.portfolio.ledger",
)
# What pip prints when it cannot fetch the build dependencies (offline, no index).
UNREACHABLE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
)

# Run in a subprocess, with ffe imported from PYTHONPATH: reports where the hot modules came
# from and what two backtests of sma_cross 10/20 on SP500 produced, one as in the demo and one
# through denials by the risk limits, a drawdown halt, slippage and fills at the close; and
# checks that configs, risk engines and results pickle (a sweep sends them to its workers);
# and the rows of a small sweep on the batch kernel.
PROBE = """
import importlib, json, pickle, sys
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import BundledBarSource, load_market
from ffe.decide import make_strategy
from ffe.execution import FillModel
from ffe.risk import RiskEngine

modules = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
market = load_market(BundledBarSource(), ["SP500"])
strategy = make_strategy("sma_cross", {"fast": 10, "slow": 20})
cases = {
    # Whole units and, for the demo, no drawdown halt: the settings before today's defaults
    # (a 100 % target then sits under the 95 % position cap often enough to trade, and is
    # denied at times).
    "demo": (
        BacktestConfig(cash=10_000, fill=FillModel(commission=0.002), lot_size=1.0),
        RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None),
    ),
    "risk": (
        BacktestConfig(
            cash=10_000,
            fill=FillModel(at="close", commission=0.001, slippage_bps=5),
            lot_size=1.0,
        ),
        RiskEngine.from_limits(max_position_pct=0.95, max_gross_leverage=1.0, max_drawdown=0.5),
    ),
}
runs = {}
for name, (config, risk) in cases.items():
    result = run_backtest(market, strategy, config, risk)
    assert pickle.loads(pickle.dumps(config)) == config
    if risk is not None:
        assert pickle.loads(pickle.dumps(risk)).checks == risk.checks
    again = pickle.loads(pickle.dumps(result))
    assert again.trades == result.trades
    assert again.ledger.cash == result.ledger.cash
    runs[name] = {
        "trades": [repr(trade) for trade in result.trades],
        "final_equity": repr(float(result.equity[-1])),
        "cash": repr(result.ledger.cash),
        "orders": [(o.client_id, o.status.value, repr(o.fill_price)) for o in result.orders],
        "denials": [(bar, d.check, d.reason) for bar, d in result.denials],
        "halted_at": result.halted_at,
    }
# A sweep on the batch kernel, row for row (its points run in process, on the kernel).
from ffe.backtest.sweep import run_sweep
full = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
points = [{"fast": f, "slow": s} for f in (5, 10, 20) for s in (30, 60)]
rows = run_sweep(market, "sma_cross", points, cases["demo"][0], full, jobs=1)
runs["sweep"] = [repr(sorted(row.flat().items())) for row in rows]
print(json.dumps({"modules": modules, "runs": runs}))
"""


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip on a developer machine; fail under CI=true."""
    if _ci():
        pytest.fail(f"compiled build not testable under CI: {reason}")
    pytest.skip(f"compiled build not testable here: {reason}")


def _check_toolchain() -> None:
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[:1]
    if not compiler or shutil.which(compiler[0]) is None:
        _unavailable(f"no C compiler ({sysconfig.get_config_var('CC')!r} not found)")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.is_file():
        _unavailable(f"no Python headers ({header} missing)")


def _copy_tree(dest: Path) -> Path:
    """What the wheel is built from, without caches or stray extension modules."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", ".gitignore"):
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.pyd")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    return dest


def _build_wheel(tree: Path, out: Path) -> Path:
    env = os.environ | {
        "HATCH_BUILD_HOOK_ENABLE_MYPYC": "true",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out)]
    built = subprocess.run(
        [*command, str(tree)], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if built.returncode != 0:
        output = built.stdout + built.stderr
        if any(sign in output for sign in UNREACHABLE):
            _unavailable("the build dependencies could not be fetched:\n" + output[-2000:])
        pytest.fail("the compiled wheel did not build:\n" + output[-6000:])
    (wheel,) = out.glob("ffe-*.whl")
    return wheel


def _probe(path: Path) -> dict[str, Any]:
    env = os.environ | {"PYTHONPATH": str(path)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *COMPILED],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_compiled_build_when_hook_enabled_then_extensions_load_and_trades_match_pure(
    tmp_path: Path,
) -> None:
    _check_toolchain()
    wheel = _build_wheel(_copy_tree(tmp_path / "tree"), tmp_path / "dist")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)

    compiled, pure = _probe(site), _probe(ROOT / "src")

    assert "-cp3" in wheel.name  # a platform wheel, not py3-none-any
    for name, file in compiled["modules"].items():
        assert Path(file).is_relative_to(site), (name, file)
        assert not file.endswith(".py"), f"{name} was not compiled: {file}"
    for name, file in pure["modules"].items():
        assert file.endswith(".py"), (name, file)
    assert compiled["runs"] == pure["runs"]
    assert len(pure["runs"]["demo"]["trades"]) > 100
    assert pure["runs"]["risk"]["denials"]
    assert pure["runs"]["risk"]["halted_at"] is not None
    # The build worked on a copy: nothing compiled may appear beside the sources.
    assert not [p for p in (ROOT / "src").rglob("*") if p.suffix in {".so", ".pyd"}]
