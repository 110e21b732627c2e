"""deploy/monitoring/ through `make deploy-check`'s monitoring check: it passes on the
checkout, and each kind of mistake fails it with a message naming the mistake: a threshold
its unit test no longer matches (promtool's diff), PromQL that does not parse, an alert
without a runbook or with a runbook that does not exist, a runbook no alert links, an alert no
unit test fires."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support.deploy import broken, copy_checkout, failing, passing

ALERTS = Path("deploy") / "monitoring" / "rules" / "alerts.yml"
RUNBOOKS = "https://github.com/ffe-dev/ffe/blob/main/docs/runbooks/"


def test_monitoring_check_when_run_on_the_checkout_then_it_passes() -> None:
    output = passing("monitoring")

    assert "promtool test rules:" in output
    assert "amtool check-config: alertmanager.yml valid" in output
    assert "each fires in a unit test" in output


BROKEN = [
    # 10% errors no longer passes a 20% threshold: the test expecting the page gets none.
    pytest.param(
        "expr: ffe:http_requests:error_ratio_5m > 0.05 and",
        "expr: ffe:http_requests:error_ratio_5m > 0.2 and",
        [
            "promtool test rules failed on deploy/monitoring/tests/api.yml",
            "alertname: FfeHighErrorRate, time: 5m",
            "got:[]",
        ],
        id="a-moved-threshold-fails-its-unit-test-with-promtools-diff",
    ),
    pytest.param(
        "expr: ffe:job_queue_depth:max > 50",
        "expr: ffe:job_queue_depth:max >> 50",
        [
            "promtool check rules failed on deploy/monitoring/rules/alerts.yml",
            '"FfeJobQueueBacklog": could not parse expression',
        ],
        id="promql-that-does-not-parse-fails-check-rules",
    ),
    # Its page is then linked by nothing, which is the same mistake seen from the other side.
    pytest.param(
        f"runbook_url: {RUNBOOKS}ffe-drawdown-halt.md",
        "team: trading",
        [
            "alert FfeDrawdownHalt (alerts.yml): no runbook_url annotation",
            "docs/runbooks/ffe-drawdown-halt.md is linked by no alert",
        ],
        id="an-alert-without-runbook-url",
    ),
    pytest.param(
        f"runbook_url: {RUNBOOKS}ffe-no-workers.md",
        f"runbook_url: {RUNBOOKS}ffe-no-worker.md",
        [
            "alert FfeNoWorkers (alerts.yml): runbook_url names docs/runbooks/ffe-no-worker.md, "
            "which does not exist"
        ],
        id="a-runbook-url-naming-a-missing-file",
    ),
]


@pytest.mark.parametrize(("old", "new", "said"), BROKEN)
def test_monitoring_check_when_an_alert_is_broken_then_it_fails_naming_it(
    tmp_path: Path, old: str, new: str, said: list[str]
) -> None:
    output = broken("monitoring", ALERTS, old, new, into=tmp_path)

    assert not [message for message in said if message not in output], output


def test_monitoring_check_when_a_severity_is_not_routed_then_it_fails(tmp_path: Path) -> None:
    root = copy_checkout(tmp_path)
    text = (root / ALERTS).read_text()
    # The first severity in the file is FfeHighErrorRate's.
    (root / ALERTS).write_text(text.replace("severity: critical", "severity: page", 1))

    output = failing("monitoring", root)

    assert "alert FfeHighErrorRate (alerts.yml): severity 'page' is not one of" in output


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

    output = failing("monitoring", root)

    assert "alert FfeDiskAlmostFull (alerts.yml) fires in no unit test" in output
