"""An agent restarted on its run reports the run's drawdown, not the drawdown since the
restart: the live portfolio and the journal's agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.support.wait import wait_for

from ffe.api import queries
from ffe.data import DataCatalog


def _import_dip(data_dir: Path, tmp_path: Path) -> None:
    """200 daily bars: up from 100 to 150, down to 90 by bar 40, then back up to 120 only."""
    close = np.concatenate(
        [np.linspace(100, 150, 20), np.linspace(150, 90, 20), np.linspace(90, 120, 160)]
    )
    lines = ["time,open,high,low,close,volume"]
    for i, price in enumerate(close):
        day = np.datetime64("2020-01-01") + i
        lines.append(f"{day},{price},{price * 1.01},{price * 0.99},{price},1000")
    path = tmp_path / "dip.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    DataCatalog(data_dir).import_file(path, "DIP", "1d")


def _start(api, speed: float) -> None:
    body = {"strategy": "buy_and_hold", "symbols": ["DIP"], "speed": speed}
    response = api.client.post("/api/v1/agent/start", json=body, headers=api.headers("trader"))
    assert response.status_code == 202, response.text


def _last_bar(api) -> int:
    agent = api.services.supervisor.agent
    core = None if agent is None else agent.core
    return -1 if core is None else int(core.last_bar)


def test_agent_resumed_on_its_run_then_live_drawdown_equals_the_journals(api_with, tmp_path):
    # No drawdown halt: the run must fall 40 % for the drawdown to mean something.
    with api_with(FFE__RISK__MAX_DRAWDOWN="none") as api:
        supervisor = api.services.supervisor
        _import_dip(Path(api.settings.data.dir), tmp_path)
        _start(api, speed=20)  # 7 s of margin after bar 60 for the stop to land
        wait_for(lambda: _last_bar(api) >= 60)  # past the peak (bar 19) and the trough (bar 39)
        api.client.portal.call(supervisor.stop)
        first_run, stopped_at = supervisor.agent.core.journal.run_id, _last_bar(api)
        assert stopped_at < 199, "the replay ended before the stop: slow it down"

        _start(api, speed=0)  # resumes the run and replays the rest at once
        wait_for(lambda: not supervisor.running)
        assert supervisor.error is None
        assert supervisor.agent.core.journal.run_id == first_run
        snapshot = supervisor.agent.snapshot()
        live = queries.live_portfolio(snapshot, supervisor.peak, supervisor.max_drawdown)
        journal = api.client.get("/api/v1/portfolio", headers=api.headers()).json()

        assert live is not None
        assert journal["run_id"] == first_run
        assert live["as_of"] == journal["as_of"]
        assert live["equity"] == pytest.approx(journal["equity"], rel=1e-12)
        assert live["drawdown"] == pytest.approx(journal["drawdown"], rel=1e-9)
        assert live["max_drawdown"] == pytest.approx(journal["max_drawdown"], rel=1e-9)
        assert live["drawdown"] < -0.15  # 120 is well below the peak of 150, before the restart
        assert live["max_drawdown"] < -0.35  # 150 down to 90
