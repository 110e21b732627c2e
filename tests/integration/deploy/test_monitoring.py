"""deploy/monitoring/ through `make deploy-check`'s monitoring check: it passes on the
checkout, and each kind of mistake fails it with a message naming the mistake: a threshold
its unit test no longer matches (promtool's diff), PromQL that does not parse, an alert
without a runbook or with a runbook that does not exist, a runbook no alert links, an alert no
unit test fires."""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy import break_value, copy_checkout, run_check

ALERTS = Path("deploy") / "monitoring" / "rules" / "alerts.yml"
RUNBOOKS = "https://github.com/ffe-dev/ffe/blob/main/docs/runbooks/"


def test_monitoring_check_when_run_on_the_checkout_then_it_passes() -> None:
    done = run_check("monitoring")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "promtool test rules:" in done.stdout
    assert "amtool check-config: alertmanager.yml valid" in done.stdout
    assert "each fires in a unit test" in done.stdout


def test_monitoring_check_when_a_threshold_moves_then_the_unit_test_fails_with_promtools_diff(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    # 10% errors no longer passes a 20% threshold: the test expecting the page gets none.
    break_value(
        root / ALERTS,
        "expr: ffe:http_requests:error_ratio_5m > 0.05 and",
        "expr: ffe:http_requests:error_ratio_5m > 0.2 and",
    )

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert "promtool test rules failed on deploy/monitoring/tests/api.yml" in done.stdout
    assert "alertname: FfeHighErrorRate, time: 5m" in done.stdout
    assert "got:[]" in done.stdout


def test_monitoring_check_when_promql_does_not_parse_then_check_rules_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(
        root / ALERTS, "expr: ffe:job_queue_depth:max > 50", "expr: ffe:job_queue_depth:max >> 50"
    )

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert "promtool check rules failed on deploy/monitoring/rules/alerts.yml" in done.stdout
    assert '"FfeJobQueueBacklog": could not parse expression' in done.stdout


def test_monitoring_check_when_an_alert_has_no_runbook_url_then_it_names_the_alert(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(root / ALERTS, f"runbook_url: {RUNBOOKS}ffe-drawdown-halt.md", "team: trading")

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert "alert FfeDrawdownHalt (alerts.yml): no runbook_url annotation" in done.stdout
    # Its page is now linked by nothing, which is the same mistake seen from the other side.
    assert "docs/runbooks/ffe-drawdown-halt.md is linked by no alert" in done.stdout


def test_monitoring_check_when_a_runbook_url_names_a_missing_file_then_it_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(
        root / ALERTS,
        f"runbook_url: {RUNBOOKS}ffe-no-workers.md",
        f"runbook_url: {RUNBOOKS}ffe-no-worker.md",
    )

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert (
        "alert FfeNoWorkers (alerts.yml): runbook_url names docs/runbooks/ffe-no-worker.md, "
        "which does not exist"
    ) in done.stdout


def test_monitoring_check_when_a_severity_is_not_routed_then_it_fails(tmp_path: Path) -> None:
    root = copy_checkout(tmp_path)
    text = (root / ALERTS).read_text()
    # The first severity in the file is FfeHighErrorRate's.
    (root / ALERTS).write_text(text.replace("severity: critical", "severity: page", 1))

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert "alert FfeHighErrorRate (alerts.yml): severity 'page' is not one of" in done.stdout


def test_monitoring_check_when_no_unit_test_fires_an_alert_then_it_names_the_alert(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    tests = root / "deploy" / "monitoring" / "tests" / "capacity.yml"
    text = tests.read_text()
    # The firing case is the file's last: cut it, leaving the case before the for: has run.
    firing = "      - eval_time: 6m\n        alertname: FfeDiskAlmostFull\n"
    assert text.count(firing) == 1
    tests.write_text(text[: text.index(firing)])

    done = run_check("monitoring", root=root)

    assert done.returncode == 1
    assert "alert FfeDiskAlmostFull (alerts.yml) fires in no unit test" in done.stdout
