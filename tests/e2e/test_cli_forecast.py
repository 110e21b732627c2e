from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ffe.cli.app import app

runner = CliRunner()

MODELS = ("naive", "drift", "auto_ets")
BENCH = [
    "forecast",
    "bench",
    "--symbol",
    "SP500",
    "--start",
    "2014-01-01",
    "--models",
    ",".join(MODELS),
    "--window",
    "200",
    "--refit-every",
    "50",
    "--horizon",
    "1",
    "--horizon",
    "5",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """One run of the benchmark with --json and --report, shared by the tests that read it."""
    tmp = tmp_path_factory.mktemp("bench")
    report = tmp / "out" / "bench.html"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setenv("FFE__DATA__DIR", str(tmp / "data"))
        patch.delenv("FFE__DATABASE__URL", raising=False)
        result = runner.invoke(app, [*BENCH, "--json", "--report", str(report)])
    return result, report


def _scores(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    scores: list[dict[str, Any]] = json.loads(result.stdout)["scores"]
    return scores


def test_forecast_bench_when_json_then_scores_every_model_and_combination_per_horizon(
    bench: tuple[Result, Path],
) -> None:
    result, _ = bench

    scores = _scores(result)

    expected = {*MODELS, "ensemble", "equal", "best_so_far", "best_in_hindsight"}
    for horizon in (1, 5):
        rows = {s["model"]: s for s in scores if s["horizon"] == horizon}
        assert set(rows) == expected
        assert rows["naive"]["dm_statistic"] is None
        assert rows["drift"]["dm_p_value"] is not None
        assert rows["best_in_hindsight"]["note"].split(",")[0] in MODELS
        for row in rows.values():
            assert row["n"] > 900  # about four years of origins after the 200-bar window
            assert row["crps"] > 0
            assert 0.5 < row["coverage_95"] <= 1.0


def test_forecast_bench_when_json_then_origins_follow_start_and_window(
    bench: tuple[Result, Path],
) -> None:
    result, _ = bench

    data = json.loads(result.stdout)

    assert data["symbol"] == "SP500"
    assert "2014-10-01" < data["first_origin"] < "2014-11-01"  # 200 trading days after start
    assert data["window"] == 200
    assert data["refit_every"] == 50
    for weights in data["final_weights"].values():
        assert set(weights) == set(MODELS)
        assert sum(weights.values()) == pytest.approx(1.0)


def test_forecast_bench_when_report_then_html_names_the_models(
    bench: tuple[Result, Path],
) -> None:
    result, report = bench

    assert result.exit_code == 0, result.output
    html = report.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html")
    for name in (*MODELS, "ensemble", "equal", "best_so_far", "best_in_hindsight"):
        assert name in html
    assert "report written to" in result.stderr
    # Each baseline's row carries its Diebold-Mariano statistics and p-values against the
    # ensemble, on CRPS and on squared error, as the JSON has them.
    one_ahead = html[html.index("<h2>1 bar(s) ahead") : html.index("<h2>5 bar(s) ahead")]
    for score in (s for s in _scores(result) if s["horizon"] == 1 and s["model"] != "ensemble"):
        row = re.search(rf"<tr><td>{score['model']}[ <].*?</tr>", one_ahead)
        assert row is not None, score["model"]
        cells = re.findall(r"<td>(.*?)</td>", row.group(0))
        assert cells[-4:] == [
            f"{score['dm_crps_vs_ensemble']:+.2f}",
            f"{score['dm_crps_vs_ensemble_p']:.3f}",
            f"{score['dm_se_vs_ensemble']:+.2f}",
            f"{score['dm_se_vs_ensemble_p']:.3f}",
        ]


def test_forecast_bench_when_table_then_rows_for_each_model() -> None:
    result = runner.invoke(
        app,
        [
            "forecast",
            "bench",
            "--symbol",
            "SP500",
            "--start",
            "2018-01-01",
            "--models",
            "drift",
            "--window",
            "100",
            "--refit-every",
            "50",
            "--horizon",
            "1",
            "--jobs",
            "1",
        ],
    )

    assert result.exit_code == 0, result.output
    assert "naive" in result.stdout  # the random walk is always added
    assert "drift" in result.stdout
    assert "Diebold-Mariano" in result.stdout


def _assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0]


def test_forecast_bench_when_unknown_model_then_exit_2_with_one_line_naming_it() -> None:
    result = runner.invoke(app, ["forecast", "bench", "--models", "naive,prophet"])

    _assert_one_line_error(result, "prophet", "available:", "auto_ets")


def test_forecast_bench_when_unknown_symbol_then_exit_2_with_one_line_naming_it() -> None:
    result = runner.invoke(app, ["forecast", "bench", "--symbol", "NOPE", "--models", "naive"])

    _assert_one_line_error(result, "NOPE")


def test_forecast_bench_when_too_few_bars_for_window_then_exit_2_saying_so() -> None:
    result = runner.invoke(
        app,
        ["forecast", "bench", "--symbol", "SP500", "--start", "2018-10-01", "--models", "naive"],
    )

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    # The last line: the (empty) progress bar has already been drawn above it.
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"error: SP500: \d+ bars are not enough for a 500-bar window", last)


def test_forecast_bench_when_ray_address_unreachable_then_exit_2_naming_it() -> None:
    import socket

    pytest.importorskip("ray")
    with socket.socket() as free:  # a port of this machine with nothing listening
        free.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{free.getsockname()[1]}"

    result = runner.invoke(app, [*BENCH, "--executor", "ray", "--ray-address", address])

    assert result.exit_code == 2
    assert f"no Ray cluster answers at '{address}'" in result.output
