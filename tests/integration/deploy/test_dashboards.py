"""The generated Grafana dashboards (deploy/monitoring/dashboards/): `make deploy-check`'s
dashboards check passes on the checkout, and fails naming the problem when a dashboard is edited
by hand, a query is not PromQL, a dashboard is missing or the datasource is not the provisioned
one; the calibration panel's two queries give what it draws, and the decision-to-order
panel its p50 and p99."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.deploy import (
    ROOT,
    break_value,
    broken,
    broken_copy,
    copy_checkout,
    deploy_python,
    failing,
    passing,
)

DASHBOARDS = Path("deploy/monitoring/dashboards")
PANEL_RULES = Path("deploy/monitoring/rules/panels.yml")


def test_dashboards_check_when_run_on_the_checkout_then_it_passes() -> None:
    output = passing("dashboards")

    assert "promtool check rules" in output
    assert "query only recorded exprs on the provisioned datasource" in output


def test_dashboards_check_when_a_panel_expr_is_edited_by_hand_then_it_names_dashboard_and_panel(
    tmp_path: Path,
) -> None:
    output = broken(
        "dashboards",
        DASHBOARDS / "ffe-api.json",
        '"expr": "sum by (route) (rate(ffe_http_requests_total[5m]))"',
        '"expr": "sum by (route) (rate(ffe_http_requests_total[1m]))"',
        into=tmp_path,
    )

    assert "ffe-api.json differs from what generate.py produces" in output
    assert (
        "dashboard ffe-api, panel 'Request rate by route', query A: expr is no recording rule's"
        in output
    )


def test_dashboards_check_when_a_query_is_not_promql_then_promtool_says_why(
    tmp_path: Path,
) -> None:
    # The same bad text in the dashboard and its rule: only promtool can tell it is not PromQL.
    root = broken_copy(
        DASHBOARDS / "ffe-database.json",
        '"expr": "max(ffe_workers_alive)"',
        '"expr": "max(ffe_workers_alive"',
        into=tmp_path,
    )
    break_value(
        root / PANEL_RULES, "expr: max(ffe_workers_alive)\n", "expr: max(ffe_workers_alive\n"
    )

    output = failing("dashboards", root)

    assert '"ffe:panel:database:workers_alive": could not parse expression' in output
    assert "unclosed left parenthesis" in output


def test_dashboards_check_when_a_dashboard_file_is_missing_then_it_fails(tmp_path: Path) -> None:
    root = copy_checkout(tmp_path)
    (root / DASHBOARDS / "ffe-ai.json").unlink()

    output = failing("dashboards", root)

    assert "deploy/monitoring/dashboards/ffe-ai.json is missing: run generate.py" in output


def test_generate_check_when_a_dashboard_differs_then_it_exits_1_naming_the_file(
    tmp_path: Path,
) -> None:
    root = broken_copy(
        DASHBOARDS / "ffe-trading.json", '"title": "Drawdown"', '"title": "DD"', into=tmp_path
    )
    generate = [str(deploy_python()), str(root / DASHBOARDS / "generate.py"), "--check"]

    done = subprocess.run(generate, capture_output=True, text=True, check=False, timeout=60)

    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "deploy/monitoring/dashboards/ffe-trading.json differs from what generate.py produces"
    ]


def test_dashboards_check_when_the_datasource_uid_differs_then_every_panel_fails(
    tmp_path: Path,
) -> None:
    provisioned = Path("deploy/monitoring/grafana/provisioning/datasources/prometheus.yml")

    output = broken("dashboards", provisioned, "uid: prometheus\n", "uid: metrics\n", into=tmp_path)

    assert (
        "dashboard ffe-trading, panel 'Drawdown': datasource {'type': 'prometheus', "
        "'uid': 'prometheus'} is not the provisioned one" in output
    )


def test_dashboards_check_when_compose_mounts_the_dashboards_elsewhere_then_it_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    # A compose file of its own: the test needs only Grafana's mounts, not the real file's.
    (root / "deploy/compose.yaml").write_text(
        "services:\n"
        "  grafana:\n"
        "    image: grafana/grafana:11.6.1\n"
        "    volumes:\n"
        "      - ./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro\n"
        "      - ./monitoring/dashboards:/dashboards:ro\n"
    )

    output = failing("dashboards", root)

    assert (
        "deploy/compose.yaml: Grafana does not mount deploy/monitoring/dashboards at "
        "/var/lib/grafana/dashboards" in output
    )


CALIBRATION_TEST = """\
rule_files: [panels.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ffe_decision_outcomes_total{confidence_bin="0.6-0.7",outcome="hit"}'
        values: '0+3x20'
      - series: 'ffe_decision_outcomes_total{confidence_bin="0.6-0.7",outcome="miss"}'
        values: '0+1x20'
    promql_expr_test:
      - expr: ffe:panel:ai:calibration_hit_rate
        eval_time: 10m
        exp_samples:
          - labels: 'ffe:panel:ai:calibration_hit_rate{confidence_bin="0.6-0.7"}'
            value: 0.75
      - expr: ffe:panel:ai:calibration_midpoint
        eval_time: 10m
        exp_samples:
          - labels: 'ffe:panel:ai:calibration_midpoint{confidence_bin="0.6-0.7"}'
            value: 0.65
"""


def test_calibration_panel_when_evaluated_then_pairs_each_bins_hit_rate_with_its_midpoint(
    tmp_path: Path,
) -> None:
    done = _promtool_test(tmp_path, "calibration.yml", CALIBRATION_TEST)

    # Only the bin with outcomes gets a midpoint bar, beside its hit rate of 3 in 4.
    assert done.returncode == 0, done.stdout + done.stderr


# 100 orders a minute: 90 within 1 to 2.5 ms of their decision, 10 within 25 to 50 ms. p50 is
# 1 + 1.5 * 50/90 ms, p99 25 + 25 * 9/10 ms, as Prometheus's floats compute them (promtool
# 2.42 compares values exactly).
DECISION_TO_ORDER_TEST = """\
rule_files: [panels.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ffe_decision_to_order_seconds_bucket{le="0.001"}'
        values: '0+0x20'
      - series: 'ffe_decision_to_order_seconds_bucket{le="0.0025"}'
        values: '0+90x20'
      - series: 'ffe_decision_to_order_seconds_bucket{le="0.025"}'
        values: '0+90x20'
      - series: 'ffe_decision_to_order_seconds_bucket{le="0.05"}'
        values: '0+100x20'
      - series: 'ffe_decision_to_order_seconds_bucket{le="+Inf"}'
        values: '0+100x20'
    promql_expr_test:
      - expr: ffe:panel:trading:decision_to_order_p50
        eval_time: 10m
        exp_samples:
          - labels: 'ffe:panel:trading:decision_to_order_p50'
            value: 0.0018333333333333335
      - expr: ffe:panel:trading:decision_to_order_p99
        eval_time: 10m
        exp_samples:
          - labels: 'ffe:panel:trading:decision_to_order_p99'
            value: 0.047500000000000014
"""


def test_decision_to_order_panel_when_evaluated_then_p50_and_p99_of_the_histogram(
    tmp_path: Path,
) -> None:
    done = _promtool_test(tmp_path, "decision_to_order.yml", DECISION_TO_ORDER_TEST)

    assert done.returncode == 0, done.stdout + done.stderr


def _promtool_test(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on a rule test ``text`` over the panels' recording rules."""
    deploy_python()  # promtool comes with the deploy tools
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed: make deploy-tools"
    shutil.copy(ROOT / PANEL_RULES, tmp_path / "panels.yml")
    (tmp_path / name).write_text(text)
    return subprocess.run(
        [promtool, "test", "rules", name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
