"""An agent's run of a strategy file resumes only while the file's text is the same."""

from __future__ import annotations

from pathlib import Path

from tests.support.agents import sqlite_journal

from ffe.agent.record import RunSpec, open_run
from ffe.data import SyntheticMarket


def _spec(sha: str) -> RunSpec:
    source = {"strategy_file": {"path": "mine.py", "class": "Mine", "sha256": sha * 64}}
    return RunSpec(strategy="mine", params={"lookback": 5}, source=source)


async def test_open_run_when_file_text_same_then_resumed_else_a_new_run(tmp_path: Path) -> None:
    market = SyntheticMarket(1, 30).to_market()
    async with sqlite_journal(tmp_path) as db:
        first, _ = await open_run(db, None, _spec("a"), market, dict(_spec("a").source))
        same, resumed = await open_run(db, first.id, _spec("a"), market, {})
        changed, resumed_changed = await open_run(db, first.id, _spec("b"), market, {})

    assert (same.id, resumed) == (first.id, True)
    assert changed.id != first.id
    assert resumed_changed is False
