"""`ffe agent run --feed ccxt:binance` on a local Binance in real time (1-second bars): it trades
each bar as it closes, is killed (SIGKILL) and started again, loses its feed for a few seconds,
and is stopped. Its orders are then compared with a backtest of the same bars: the same order on
every bar it traded, and none on the bars that were history when they reached it (its warm-up,
the bars missed while it was down, the bars that came late after the outage)."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from tests.support.fake_binance import FakeBinanceFeed
from tests.support.server import ffe_process, wait_live
from tests.support.wait import wait_for

from ffe import bootstrap
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.config import load_settings
from ffe.decide.strategy import make_strategy
from ffe.domain.market import FloatArray, History, MarketData
from ffe.domain.timeframe import Timeframe

pytestmark = [pytest.mark.serial, pytest.mark.slow]

PARAMS = {"fast": 2, "slow": 5}
SETTINGS = {
    "FFE__BACKTEST__LOT_SIZE": "0.00001",  # bitcoin in small pieces
    "FFE__AGENT__WINDOW_BARS": "60",  # a minute of warm-up
    "FFE__API__ANALYSIS_SYMBOLS": "[]",
}
FIRST_RUN_S, DOWN_S, SECOND_RUN_S, OUTAGE_S = 30.0, 6.0, 30.0, 4.0


def _agent_args(url: str) -> list[str]:
    args = ["agent", "run", "--feed", "ccxt:binance", "--api-url", url, "--symbol", "BTC/USDT"]
    args += ["--timeframe", "1s", "--strategy", "sma_cross", "--json"]
    for key, value in PARAMS.items():
        args += ["-p", f"{key}={value}"]
    return args


@dataclass(frozen=True)
class Masked:
    """sma_cross with no instruction on ``history`` bars: the backtest of what an agent that
    only trades the other bars should do."""

    name: ClassVar[str] = "sma_cross"
    history: frozenset[int]

    def warmup(self) -> int:
        return PARAMS["slow"]

    def targets(self, history: History) -> FloatArray:
        rows = np.array(make_strategy("sma_cross", PARAMS).targets(history), copy=True)
        masked = [bar for bar in self.history if bar < len(history)]
        rows[masked] = np.nan
        return rows


def _journal(folder: Path) -> dict[str, Any]:
    with sqlite3.connect(folder / "ffe.db") as db:
        state = db.execute("select checkpoint from agent_states where account='paper'").fetchone()
        audit = db.execute(
            "select action, details from audit_log where action in "
            "('agent.caught_up', 'agent.gap_filled', 'agent.feed_down', 'agent.feed_up')"
        ).fetchall()
        orders = db.execute("select client_order_id, quantity from orders").fetchall()
        runs = db.execute("select count(*) from runs").fetchone()[0]
    return {
        "checkpoint": json.loads(state[0]),
        "events": [(action, json.loads(details)) for action, details in audit],
        "orders": {int(cid.split("-")[1]): qty for cid, qty in orders},
        "runs": runs,
    }


def _orders_journaled(folder: Path) -> int:
    try:
        return len(_journal(folder)["orders"])
    except (sqlite3.Error, TypeError):
        return 0


def _market(venue: FakeBinanceFeed, origin: str, last_bar: int) -> MarketData:
    """Bars 0 to ``last_bar`` from ``origin`` as the venue sends them (prices as text)."""
    start = int(np.datetime64(origin.replace("+00:00", ""), "ms").astype(np.int64))
    rows: list[list[Any]] = []
    while len(rows) < last_bar + 1:
        asked = {"symbol": "BTCUSDT", "interval": "1s", "limit": "1000"}
        page = venue.handle("/api/v3/klines", {**asked, "startTime": str(start)})
        rows += page[: last_bar + 1 - len(rows)]
        start = int(page[-1][0]) + 1000
    assert [row[0] for row in rows] == [rows[0][0] + 1000 * k for k in range(last_bar + 1)]
    values = np.array([[float(x) for x in row[1:6]] for row in rows])
    times = np.array([row[0] for row in rows], dtype="datetime64[ms]")
    columns = [values[:, [k]] for k in range(5)]
    return MarketData(("BTC/USDT",), times, *columns, timeframe=Timeframe(1, "s"))


def _bars_of(events: list[tuple[str, dict[str, Any]]], origin: str) -> set[int]:
    """The bar numbers of the spans in caught_up and gap_filled events."""
    start = np.datetime64(origin.replace("+00:00", ""), "s")
    bars: set[int] = set()
    for action, span in events:
        if action in ("agent.caught_up", "agent.gap_filled"):
            first = int(
                (np.datetime64(span["from"].replace("+00:00", ""), "s") - start)
                .item()
                .total_seconds()
            )
            bars.update(range(first, first + span["bars"]))
    return bars


def _run_twice(venue: FakeBinanceFeed, folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    env = {**SETTINGS, "FFE__DATA__DIR": str(folder)}
    args = _agent_args(venue.api_url)
    with ffe_process(folder / "first.log", *args, env=env, port_option="--health-port") as (
        probe,
        agent,
    ):
        wait_live(probe, agent, folder / "first.log")
        time.sleep(FIRST_RUN_S)
        found["before_kill"] = _orders_journaled(folder)
        agent.send_signal(signal.SIGKILL)
        found["killed"] = agent.wait(10)
    time.sleep(DOWN_S)
    log = folder / "second.log"
    with ffe_process(log, *args, env=env, port_option="--health-port") as (probe, agent):
        wait_live(probe, agent, log)
        wait_for(lambda: "caught up" in log.read_text(), 30)
        time.sleep(SECOND_RUN_S / 2)
        venue.down = True
        time.sleep(OUTAGE_S)
        venue.down = False
        time.sleep(SECOND_RUN_S / 2)
        found["metrics"] = httpx.get(f"{probe}/metrics", timeout=10).text
        sent = time.monotonic()
        agent.send_signal(signal.SIGINT)
        found["stopped"] = agent.wait(30)
        found["stop_s"] = time.monotonic() - sent
    # Log lines, the report, and what Ctrl-C stopped and how to resume (stderr: in either
    # order with the report, which is on stdout)
    text = log.read_text()
    found["report"] = json.JSONDecoder().raw_decode(text[text.rindex('{\n  "run_id"') :])[0]
    found["log"] = text
    return found


def test_live_agent_killed_and_restarted_then_its_orders_are_the_backtests_on_every_traded_bar(
    tmp_path, monkeypatch
):
    venue = FakeBinanceFeed(origin_ms=int(time.time() - 240) * 1000, seed=20)  # real time
    venue.start()
    try:
        found = _run_twice(venue, tmp_path)
        journal = _journal(tmp_path)
        checkpoint = journal["checkpoint"]
        market = _market(venue, checkpoint["origin"], checkpoint["bar"])
    finally:
        venue.stop()

    history = _bars_of(journal["events"], checkpoint["origin"])
    for name, value in SETTINGS.items():  # for this test only: undone after it
        monkeypatch.setenv(name, value)
    settings = load_settings()
    config = BacktestConfig(
        cash=settings.backtest.cash,
        fill=bootstrap.fill_model(settings),
        lot_size=settings.backtest.lot_size,
        check_lookahead=False,
    )
    backtest = run_backtest(
        market, Masked(frozenset(history)), config, bootstrap.risk_engine(settings)
    )
    expected = {order.bar: order.quantity for order in backtest.orders}
    agent = journal["orders"]

    assert found["killed"] == -signal.SIGKILL
    assert found["stopped"] == 0
    assert found["stop_s"] < 5  # Ctrl-C while it waits for a bar: out at once, journal written
    assert journal["runs"] == 1  # the restart resumed the run
    assert found["report"]["resumed"] is True
    assert "stopped by Ctrl-C after bar" in found["log"]
    assert "resume with: ffe agent run --feed ccxt:binance" in found["log"]
    assert found["before_kill"] >= 2
    assert len(agent) - found["before_kill"] >= 2  # it traded again after the restart
    assert agent.keys() == expected.keys()
    for bar, quantity in agent.items():
        assert quantity == pytest.approx(expected[bar], rel=1e-9, abs=1e-12), bar
    assert not history & agent.keys()  # nothing traded on a bar that was history
    caught_up = [span for action, span in journal["events"] if action == "agent.caught_up"]
    assert len(caught_up) == 2  # the warm-up, then the bars missed while it was down
    assert caught_up[1]["bars"] >= DOWN_S
    assert [a for a, _ in journal["events"]].count("agent.feed_down") == 1
    assert any(a == "agent.gap_filled" for a, _ in journal["events"])
    metrics = found["metrics"]
    assert 'ffe_agent_feed_events_total{account="paper",event="feed_down"} 1.0' in metrics
    assert 'ffe_agent_feed_up{account="paper"} 1.0' in metrics
    traded = checkpoint["bar"] + 1 - len(history)
    assert traded >= (FIRST_RUN_S + SECOND_RUN_S) * 0.5  # it kept up with the bars
