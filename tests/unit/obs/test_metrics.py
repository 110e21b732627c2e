"""Prometheus metrics: names, labels, validation, own registries, and workers merged on render."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ffe.domain.errors import ConfigError
from ffe.obs.metrics import (
    CONFIDENCE_BINS,
    DECISION_TO_ORDER_BUCKETS,
    MULTIPROC_ENV,
    JobsSnapshot,
    Metrics,
    WorkerJobs,
    mark_process_dead,
)

ROUTE = "/api/v1/runs/{run_id}"


def sample(metrics: Metrics, metric: str, /, **labels: str) -> float | None:
    """The value of one sample in the rendered exposition, or None when absent."""
    body, _ = metrics.render()
    return sample_in(body, metric, **labels)


def sample_in(body: bytes, metric: str, /, **labels: str) -> float | None:
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    return Metrics()


def test_observe_request_when_called_then_counter_and_histogram_by_route_template(metrics):
    metrics.observe_request("get", ROUTE, 200, 0.004)
    metrics.observe_request("GET", ROUTE, 200, 0.2)
    metrics.observe_request("GET", ROUTE, 404, 0.001)

    assert sample(metrics, "ffe_http_requests_total", method="GET", route=ROUTE, status="200") == 2
    assert sample(metrics, "ffe_http_requests_total", status="404") == 1
    count = sample(metrics, "ffe_http_request_duration_seconds_count", route=ROUTE)
    assert count == 3
    total = sample(metrics, "ffe_http_request_duration_seconds_sum", method="GET")
    assert total == pytest.approx(0.205)


def test_observe_request_buckets_when_rendered_then_span_1ms_to_10s(metrics):
    metrics.observe_request("GET", "/health", 200, 0.0005)
    body, _ = metrics.render()

    bounds = {
        s.labels["le"]
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "ffe_http_request_duration_seconds_bucket"
    }
    assert {"0.001", "10.0", "+Inf"} <= bounds
    assert sample_in(body, "ffe_http_request_duration_seconds_bucket", le="0.001") == 1


def test_metrics_when_two_instances_then_registries_are_independent(monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    first, second = Metrics(), Metrics()

    first.cache_event("bars", "hit")

    assert sample(first, "ffe_cache_requests_total", cache="bars", result="hit") == 1
    assert sample(second, "ffe_cache_requests_total", cache="bars", result="hit") is None


def test_record_decision_when_seconds_given_then_latency_observed(metrics):
    metrics.record_decision("BTC/USDT", "buy", seconds=0.3)
    metrics.record_decision("BTC/USDT", "buy")
    metrics.record_decision("ETH/USDT", "hold")

    assert sample(metrics, "ffe_decisions_total", symbol="BTC/USDT", action="buy") == 2
    assert sample(metrics, "ffe_decisions_total", symbol="ETH/USDT", action="hold") == 1
    assert sample(metrics, "ffe_decision_latency_seconds_count") == 1
    assert sample(metrics, "ffe_decision_latency_seconds_sum") == pytest.approx(0.3)


def test_observe_decision_to_order_when_observed_then_histogram_from_half_a_ms_to_a_second(
    metrics,
):
    metrics.observe_decision_to_order(0.0004)
    metrics.observe_decision_to_order(0.03)
    metrics.observe_decision_to_order(-1.0)  # a clock step back counts as no time, not negative
    body, _ = metrics.render()

    bounds = {
        float(s.labels["le"])
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "ffe_decision_to_order_seconds_bucket"
    }
    assert bounds == {*DECISION_TO_ORDER_BUCKETS, math.inf}
    assert min(DECISION_TO_ORDER_BUCKETS) == 0.0005
    assert max(DECISION_TO_ORDER_BUCKETS) == 1.0
    assert 0.05 in DECISION_TO_ORDER_BUCKETS  # issue 18's p99 target is a bucket's bound
    assert sample_in(body, "ffe_decision_to_order_seconds_count") == 3
    assert sample_in(body, "ffe_decision_to_order_seconds_sum") == pytest.approx(0.0304)
    assert sample_in(body, "ffe_decision_to_order_seconds_bucket", le="0.0005") == 2
    assert sample_in(body, "ffe_decision_to_order_seconds_bucket", le="0.05") == 3
    assert sample_in(body, "ffe_decision_latency_seconds_count") == 0  # the strategy's, apart


@pytest.mark.parametrize(("state", "value"), [("closed", 0), ("half_open", 1), ("open", 2)])
def test_set_breaker_when_known_state_then_gauge_value(metrics, state, value):
    metrics.set_breaker("binance", state)

    assert sample(metrics, "ffe_circuit_breaker_state", name="binance") == value


def test_set_breaker_when_unknown_state_then_value_error_naming_states(metrics):
    with pytest.raises(ValueError, match="half_open"):
        metrics.set_breaker("binance", "tripped")


def test_set_portfolio_value_when_finite_then_exported_per_account(metrics):
    metrics.set_portfolio_value("paper", 10_500.25)
    metrics.set_portfolio_value("live", 99.0)

    assert sample(metrics, "ffe_portfolio_value", account="paper") == 10_500.25
    assert sample(metrics, "ffe_portfolio_value", account="live") == 99.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_set_portfolio_value_when_not_finite_then_skipped_and_last_value_kept(metrics, bad):
    metrics.set_portfolio_value("paper", 100.0)

    metrics.set_portfolio_value("paper", bad)
    metrics.set_portfolio_value("fresh", bad)

    assert sample(metrics, "ffe_portfolio_value", account="paper") == 100.0
    assert sample(metrics, "ffe_portfolio_value", account="fresh") is None


def test_cache_event_when_results_then_counted_by_cache_and_result(metrics):
    for result in ("hit", "hit", "miss", "error"):
        metrics.cache_event("quotes", result)

    assert sample(metrics, "ffe_cache_requests_total", cache="quotes", result="hit") == 2
    assert sample(metrics, "ffe_cache_requests_total", cache="quotes", result="miss") == 1
    assert sample(metrics, "ffe_cache_requests_total", cache="quotes", result="error") == 1


def test_cache_event_when_unknown_result_then_value_error(metrics):
    with pytest.raises(ValueError, match="unknown cache result 'stale'"):
        metrics.cache_event("quotes", "stale")


def test_set_jobs_and_heartbeat_when_set_then_latest_values_exported(metrics):
    worker = WorkerJobs("host:1:abc", "worker", running=1, finished=7, failed=2)
    metrics.set_jobs(JobsSnapshot(queued=4, running=2, workers=(worker,)))
    metrics.set_jobs(JobsSnapshot(queued=1, running=1, workers=(worker,)))
    metrics.set_agent_heartbeat("paper", 1_700_000_000.5)

    assert sample(metrics, "ffe_job_queue_depth") == 1
    assert sample(metrics, "ffe_jobs_running") == 1
    assert sample(metrics, "ffe_workers_alive") == 1
    jobs = {"worker": "host:1:abc", "kind": "worker"}
    assert sample(metrics, "ffe_worker_jobs", state="finished", **jobs) == 7
    assert sample(metrics, "ffe_worker_jobs", state="failed", **jobs) == 2
    assert sample(metrics, "ffe_agent_heartbeat_timestamp_seconds", account="paper") == (
        1_700_000_000.5
    )


def test_set_jobs_when_a_worker_is_gone_then_its_series_go_too(metrics):
    gone = WorkerJobs("host:1:abc", "worker", running=0, finished=3, failed=0)
    metrics.set_jobs(JobsSnapshot(queued=0, running=0, workers=(gone,)))

    metrics.set_jobs(JobsSnapshot(queued=0, running=0, workers=()))

    assert sample(metrics, "ffe_workers_alive") == 0
    assert b"host:1:abc" not in metrics.render()[0]


def test_render_when_single_process_then_prometheus_text_with_process_metrics(metrics):
    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    assert b"# TYPE ffe_http_requests_total counter" in body
    assert b"process_cpu_seconds_total" in body or sys.platform != "linux"


def test_metrics_when_dir_given_without_env_then_config_error_says_to_export(monkeypatch, tmp_path):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)

    with pytest.raises(ConfigError, match=f"{MULTIPROC_ENV}=.* before prometheus_client"):
        Metrics(multiprocess_dir=tmp_path)


def test_mark_process_dead_when_single_process_then_nothing_happens(metrics, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)

    metrics.mark_process_dead(12345)
    mark_process_dead(12345)

    assert metrics.multiprocess_dir is None


_WRITER = textwrap.dedent(
    """
    import os, sys
    from ffe.obs.metrics import JobsSnapshot, Metrics
    requests, depth, state = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    m = Metrics()
    for _ in range(requests):
        m.observe_request("GET", "/api/v1/runs/{run_id}", 200, 0.01)
    m.set_jobs(JobsSnapshot(queued=depth))
    m.set_breaker("broker", state)
    print(os.getpid())
    """
)

_READER = textwrap.dedent(
    """
    import sys
    from ffe.obs.metrics import JobsSnapshot, Metrics
    m = Metrics()
    m.set_jobs(JobsSnapshot(queued=9))  # read from the journal by the process scraped
    for pid in sys.argv[1:]:
        m.mark_process_dead(int(pid))
    sys.stdout.write(m.render()[0].decode())
    """
)


def _python(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return out


def test_render_when_multiprocess_then_workers_are_merged(tmp_path: Path):
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    writers = [_python(_WRITER, env, "3", "2", "open"), _python(_WRITER, env, "4", "5", "closed")]
    first_pid, _ = (int(_finish(w)) for w in writers)

    merged = _finish(_python(_READER, env)).encode()
    after_death = _finish(_python(_READER, env, str(first_pid))).encode()

    route = {"route": "/api/v1/runs/{run_id}"}
    assert sample_in(merged, "ffe_http_requests_total", **route) == 7
    assert sample_in(merged, "ffe_http_request_duration_seconds_count", **route) == 7
    assert sample_in(merged, "ffe_job_queue_depth") == 9  # the journal's, never summed
    assert sample_in(merged, "ffe_circuit_breaker_state", name="broker") == 2
    assert b"process_cpu_seconds_total" not in merged
    # A dead worker's counts stay; its live gauges go.
    assert sample_in(after_death, "ffe_http_requests_total", **route) == 7
    assert sample_in(after_death, "ffe_circuit_breaker_state", name="broker") == 0


_SWEEPER = textwrap.dedent(
    """
    import json, sys
    from ffe.obs.metrics import Metrics
    m = Metrics()
    m.set_breaker("broker", "half_open")  # this process is alive: its gauge stays
    gone = m.forget_dead_processes()
    print(json.dumps({"gone": gone, "body": m.render()[0].decode()}))
    """
)


def test_forget_dead_processes_when_worker_exited_then_its_gauges_go_live_ones_stay(
    tmp_path: Path,
):
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    exited = int(_finish(_python(_WRITER, env, "2", "6", "open")))  # exits without cleaning up

    swept = json.loads(_finish(_python(_SWEEPER, env)))

    assert swept["gone"] == [exited]
    body = swept["body"].encode()
    # the dead worker's breaker (open: 2) is gone; this one's half-open (1) stays
    assert sample_in(body, "ffe_circuit_breaker_state", name="broker") == 1
    assert sample_in(body, "ffe_http_requests_total", route="/api/v1/runs/{run_id}") == 2
    assert not list(tmp_path.glob(f"gauge_live*_{exited}.db"))


def test_forget_dead_processes_when_single_process_then_nothing(metrics):
    assert metrics.forget_dead_processes() == []


# -- the trading, forecasting and service metrics of issue 17 -------------------------------


def test_build_info_when_built_then_1_with_this_version(metrics):
    import ffe

    assert sample(metrics, "ffe_build_info", version=ffe.__version__) == 1
    assert sample(Metrics(version="9.9.9"), "ffe_build_info", version="9.9.9") == 1


@pytest.mark.parametrize(
    ("confidence", "label"),
    [(0.0, "0.0-0.1"), (0.55, "0.5-0.6"), (0.6, "0.6-0.7"), (0.7, "0.7-0.8"), (0.99, "0.9-1.0"),
     (1.0, "0.9-1.0"), (1.2, "0.9-1.0"), (-0.1, "0.0-0.1")],
)  # fmt: skip
def test_record_decision_outcome_when_confidence_then_its_bin_of_0_1(metrics, confidence, label):
    metrics.record_decision_outcome(confidence, hit=True)
    metrics.record_decision_outcome(confidence, hit=False)
    metrics.record_decision_outcome(confidence, hit=False)

    assert sample(metrics, "ffe_decision_outcomes_total", confidence_bin=label, outcome="hit") == 1
    assert sample(metrics, "ffe_decision_outcomes_total", confidence_bin=label, outcome="miss") == 2
    assert tuple(f"0.{i}-{'1.0' if i == 9 else f'0.{i + 1}'}" for i in range(10)) == CONFIDENCE_BINS


def test_set_risk_halted_and_dependency_when_unknown_name_then_value_error_naming_the_known(
    metrics,
):
    with pytest.raises(ValueError, match="daily_loss, drawdown"):
        metrics.set_risk_halted("paper", "emergency", True)
    with pytest.raises(ValueError, match="database, redis"):
        metrics.set_dependency_up("kafka", False)


def test_record_fill_and_trades_when_counted_then_by_side_and_result(metrics):
    metrics.record_fill("SP500", 3.0)
    metrics.record_fill("SP500", -1.5)
    metrics.record_fill("SP500", 0.0)  # nothing filled: not a fill
    metrics.record_trades_closed("paper", wins=0, losses=0)
    assert sample(metrics, "ffe_trades_closed_total", account="paper", result="win") == 0
    metrics.record_trades_closed("paper", wins=2, losses=1)
    metrics.record_trades_closed("paper", wins=0, losses=1)

    assert sample(metrics, "ffe_fills_total", symbol="SP500", side="buy") == 1
    assert sample(metrics, "ffe_fills_total", symbol="SP500", side="sell") == 1
    assert sample(metrics, "ffe_trades_closed_total", account="paper", result="win") == 2
    assert sample(metrics, "ffe_trades_closed_total", account="paper", result="loss") == 2


_GAUGE_WRITER = textwrap.dedent(
    """
    import sys
    from ffe.obs.metrics import Metrics
    value = float(sys.argv[1])
    m = Metrics()
    m.set_risk_halted("paper", "drawdown", value > 0)
    m.set_drawdown("paper", value)
    m.set_realized_pnl("paper", value)
    m.set_ensemble_weight("SP500", "naive", value)
    m.set_dependency_up("database", value > 0)
    m.observe_forecast("naive", value)
    """
)


def test_render_when_multiprocess_then_new_gauges_one_series_each_the_latest_value(tmp_path):
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    _finish(_python(_GAUGE_WRITER, env, "0.25"))
    _finish(_python(_GAUGE_WRITER, env, "0"))  # the later process: its values win

    merged = _finish(_python(_READER, env))
    families = {f.name: f for f in text_string_to_metric_families(merged)}

    expected = {
        "ffe_risk_halted": 0.0,
        "ffe_drawdown_ratio": 0.0,
        "ffe_realized_pnl": 0.0,
        "ffe_ensemble_weight": 0.0,
        "ffe_dependency_up": 0.0,
        "ffe_build_info": 1.0,  # not summed over the three processes
    }
    for name, value in expected.items():
        samples = families[name].samples
        assert [s.value for s in samples] == [value], name  # one series: no pid label
        assert "pid" not in samples[0].labels
    count = [
        s for s in families["ffe_forecast_duration_seconds"].samples if s.name.endswith("_count")
    ]
    assert [s.value for s in count] == [2]  # both processes' observations


# -- whether an account's agent is meant to be running ----------------------------------------


def test_set_agent_running_when_started_then_1_when_stopped_on_purpose_then_0(metrics):
    metrics.set_agent_running("paper", True)
    assert sample(metrics, "ffe_agent_running", account="paper") == 1

    metrics.set_agent_running("paper", False)

    assert sample(metrics, "ffe_agent_running", account="paper") == 0
    assert sample(metrics, "ffe_agent_running", account="other") is None


_RUNNING_WRITER = textwrap.dedent(
    """
    import os, sys
    from ffe.obs.metrics import Metrics
    m = Metrics()
    for flag in sys.argv[1:]:
        m.set_agent_running("paper", flag == "1")
    print(os.getpid())
    """
)


def test_render_when_agent_process_died_running_then_still_1_until_one_stops_on_purpose(tmp_path):
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    # An agent process that started and then died without stopping (a crash, a SIGKILL):
    # even once it is known dead, its last value stays, so its stale heartbeat still pages.
    crashed = int(_finish(_python(_RUNNING_WRITER, env, "1")))
    after_crash = _finish(_python(_READER, env, str(crashed))).encode()
    # A later agent of the account that ran and was stopped on purpose: its 0 is the latest.
    _finish(_python(_RUNNING_WRITER, env, "1", "0"))
    after_stop = _finish(_python(_READER, env)).encode()

    assert sample_in(after_crash, "ffe_agent_running", account="paper") == 1
    assert sample_in(after_stop, "ffe_agent_running", account="paper") == 0
    families = {f.name: f for f in text_string_to_metric_families(after_stop.decode())}
    assert len(families["ffe_agent_running"].samples) == 1  # one series: no pid label
