"""The `workflows` deploy check on .github/workflows/: it passes on the checkout, and fails,
naming the problem, on a copy where a job needs a job that does not exist, a run script
expands an untrusted expression, production's backup step is gone, the production job runs
helm upgrade itself (Argo CD is production's only deployer), production no longer PATCHes
the Argo CD Application, or no longer waits for it to be Synced or Healthy, or a job has no
time limit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.support.deploy import ROOT, broken, passing

RELEASE = Path(".github") / "workflows" / "release.yml"
CI = Path(".github") / "workflows" / "ci.yml"


def test_workflows_check_when_run_on_the_checkout_then_it_passes() -> None:
    output = passing("workflows")

    assert re.search(r"actionlint: \d+ workflow\(s\) clean", output)
    assert "checkov (github_actions): no failed check" in output


def test_workflows_check_when_a_job_needs_a_missing_job_then_actionlint_fails_it(
    tmp_path: Path,
) -> None:
    output = broken("workflows", RELEASE, "needs: [staging]", "needs: [stagign]", into=tmp_path)

    assert re.search(
        r'release\.yml:\d+:\d+: job "production" needs job "stagign" which does not exist in '
        r"this workflow \[job-needs\]",
        output,
    ), output


def test_workflows_check_when_a_run_script_expands_an_untrusted_expression_then_it_fails(
    tmp_path: Path,
) -> None:
    output = broken(
        "workflows",
        CI,
        "run: .ci/run",
        'run: echo "${{ github.event.pull_request.title }}" && .ci/run',
        into=tmp_path,
    )

    assert re.search(
        r'ci\.yml:\d+:\d+: "github\.event\.pull_request\.title" is potentially untrusted\. '
        r"avoid using it directly in inline scripts\..*\[expression\]",
        output,
    ), output


def test_workflows_check_when_production_has_no_backup_step_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    text = (ROOT / RELEASE).read_text()
    start = text.index("      - name: Backup before the upgrade\n")
    end = text.index("      - name: Deploy through Argo CD\n", start)

    output = broken("workflows", RELEASE, text[start:end], "", into=tmp_path)

    assert (
        "release.yml: job production runs no backup step (kubectl create job "
        "--from=cronjob/ffe-backup) before its Argo CD deploy step "
        "(PATCH /api/v1/applications/ffe-production)" in output
    ), output


def test_workflows_check_when_production_runs_helm_upgrade_itself_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    # What Argo CD's selfHeal would fight: a helm upgrade into ffe-production beside the
    # Argo CD deploy, after the backup, so only the one-deployer rule can catch it.
    helm_step = (
        "      - name: helm upgrade into production\n"
        "        run: |\n"
        "          helm upgrade --install ffe deploy/helm/ffe -n ffe-production \\\n"
        "            -f deploy/helm/ffe/values-production.yaml --wait --atomic\n"
    )
    deploy = "      - name: Deploy through Argo CD\n"

    output = broken("workflows", RELEASE, deploy, helm_step + deploy, into=tmp_path)

    assert (
        "release.yml: job production step 'helm upgrade into production' runs `helm upgrade` "
        "on production; Argo CD (Application ffe-production) is production's only deployer"
        in output
    ), output


def test_workflows_check_when_production_patches_another_application_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    # The release pinned on another Application: nothing hands it to ffe-production.
    output = broken(
        "workflows",
        RELEASE,
        '--request PATCH "$server/api/v1/applications/ffe-production"',
        '--request PATCH "$server/api/v1/applications/ffe-staging"',
        into=tmp_path,
    )

    assert (
        "release.yml: no job deploys production through Argo CD (a curl --request PATCH of "
        "/api/v1/applications/ffe-production)" in output
    ), output


@pytest.mark.parametrize(
    ("condition", "status", "field"),
    [
        ('.status.sync.status == "Synced"', "Synced", ".status.sync.status"),
        ('.status.health.status == "Healthy"', "Healthy", ".status.health.status"),
    ],
)
def test_workflows_check_when_production_stops_waiting_for_a_status_then_it_fails_naming_it(
    tmp_path: Path, condition: str, status: str, field: str
) -> None:
    # The wait's condition dropped (replaced by one that always holds): the job would end
    # before Argo CD has rolled the release out, or while it is failing.
    output = broken("workflows", RELEASE, condition, "true", into=tmp_path)

    assert (
        "release.yml: job production does not wait, after its PATCH "
        f"/api/v1/applications/ffe-production, for Argo CD to report the release {status} "
        f'({field} == "{status}")' in output
    ), output


def test_workflows_check_when_a_job_has_no_timeout_then_it_fails_naming_the_job(
    tmp_path: Path,
) -> None:
    output = broken("workflows", RELEASE, "    timeout-minutes: 30\n", "", into=tmp_path)

    assert "release.yml: job staging has no timeout-minutes" in output
