"""A backtest job redone (its worker died after recording the run) records its run once: under
the job's id, whichever try gets there first. A sweep job of a file strategy records which
text ran."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from tests.support.strategy_files import forgotten, write

from ffe import bootstrap
from ffe.config import load_settings
from ffe.decide.strategy import offer_files
from ffe.service.jobs.work import WORK, Progress
from ffe.store.models import EquityPoint, Run, TradeRow

PAYLOAD = {
    "strategy": "sma_cross",
    "symbols": ["SP500"],
    "params": {"fast": 10, "slow": 30},
    "start": "2010-01-01",
    "end": "2012-12-31",
}


def _count(model: type) -> int:
    async def count() -> int:
        db = await bootstrap.open_journal(load_settings())
        try:
            async with db.session() as session:
                return int(await session.scalar(select(func.count()).select_from(model)) or 0)
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_backtest_when_redone_then_one_run_under_the_job_id():
    components, job_id = bootstrap.components(load_settings()), "ab" * 16
    reported: list[float] = []

    first, first_run = WORK["backtest"](
        components, dict(PAYLOAD), Progress(job_id, reported.append)
    )
    trades, points = _count(TradeRow), _count(EquityPoint)
    again, again_run = WORK["backtest"](
        components, dict(PAYLOAD), Progress(job_id, reported.append)
    )

    assert first_run == again_run == job_id
    assert first == again  # the same work gives the same answer
    assert first["trades"] > 0
    assert _count(Run) == 1
    assert (_count(TradeRow), _count(EquityPoint)) == (trades, points)  # nothing added
    assert reported[:2] == [0.1, 0.8]


async def test_record_backtest_when_two_tries_race_then_one_run_and_both_name_it(db, make_market):
    from ffe.backtest.engine import BacktestConfig, run_backtest
    from ffe.runs.journal import record_backtest

    closes = 100 + 10 * np.sin(np.arange(300) / 9.0)
    strategy = bootstrap.strategy(load_settings(), "sma_cross", {"fast": 5, "slow": 20})
    result = run_backtest(make_market(closes), strategy, BacktestConfig(check_lookahead=False))
    job_id = "cd" * 16

    names = await asyncio.gather(*(record_backtest(db, result, run_id=job_id) for _ in range(2)))

    assert names == [job_id, job_id]
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Run)) == 1


def test_sweep_job_when_strategy_from_settings_file_then_result_records_its_sha256(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, name="swept")
    payload = {"strategy": "swept", "grid": {"lookback": [5, 10]}, "symbol": "SP500",
               "start": "2016-01-01"}  # fmt: skip
    with forgotten():
        offer_files([path])  # as the server's strategies.files does
        found, _ = WORK["sweep"](
            bootstrap.components(load_settings()), payload, Progress("cd" * 16, lambda _: None)
        )

    assert sorted(row["params"]["lookback"] for row in found["rows"]) == [5, 10]
    assert found["strategy_file"] == {
        "path": str(path),
        "class": "Mine",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


TOMORROW = """
from typing import ClassVar

import numpy as np

_SEEN = {}  # time -> the next move: the memo of a strategy that once saw the whole data


class Tomorrow:
    name: ClassVar[str] = "tomorrow_job"

    def warmup(self) -> int:
        return 1

    def targets(self, history):
        close, times = history.close[:, 0], history.times
        for i in range(len(times) - 1):
            _SEEN.setdefault(times[i], np.sign(close[i + 1] - close[i]))
        return np.array([_SEEN.get(t, np.nan) for t in times])[:, None]
"""


def test_backtest_job_when_results_implausible_then_its_answer_warns_as_its_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tomorrow.py"
    path.write_text(TOMORROW)
    payload = {**PAYLOAD, "strategy": "tomorrow_job", "params": {}}
    with forgotten():
        offer_files([path])
        found, run_id = WORK["backtest"](
            bootstrap.components(load_settings()), payload, Progress("ef" * 16, lambda _: None)
        )

    assert found["warnings"][0].startswith("implausible Sharpe ratio")

    async def recorded() -> dict:
        db = await bootstrap.open_journal(load_settings())
        try:
            async with db.session() as session:
                return dict((await session.get(Run, run_id)).stats)
        finally:
            await db.dispose()

    assert asyncio.run(recorded())["warnings"] == found["warnings"]


async def test_worker_process_when_built_then_its_jobs_llm_failures_reach_its_metrics() -> None:
    from ffe.service.jobs.runner import worker_process

    async with worker_process(bootstrap.components(load_settings())) as process:
        assert process.worker.metrics is process.metrics  # what `ffe worker` serves on /metrics
