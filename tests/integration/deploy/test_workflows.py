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
from tests.support.deploy import break_value, copy_checkout, run_check


def _workflow(root: Path, name: str) -> Path:
    return root / ".github" / "workflows" / name


def test_workflows_check_when_run_on_the_checkout_then_it_passes() -> None:
    done = run_check("workflows")

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"actionlint: \d+ workflow\(s\) clean", done.stdout)
    assert "checkov (github_actions): no failed check" in done.stdout


def test_workflows_check_when_a_job_needs_a_missing_job_then_actionlint_fails_it(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(_workflow(root, "release.yml"), "needs: [staging]", "needs: [stagign]")

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert re.search(
        r'release\.yml:\d+:\d+: job "production" needs job "stagign" which does not exist in '
        r"this workflow \[job-needs\]",
        done.stdout,
    ), done.stdout


def test_workflows_check_when_a_run_script_expands_an_untrusted_expression_then_it_fails(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(
        _workflow(root, "ci.yml"),
        "run: .ci/run",
        'run: echo "${{ github.event.pull_request.title }}" && .ci/run',
    )

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert re.search(
        r'ci\.yml:\d+:\d+: "github\.event\.pull_request\.title" is potentially untrusted\. '
        r"avoid using it directly in inline scripts\..*\[expression\]",
        done.stdout,
    ), done.stdout


def test_workflows_check_when_production_has_no_backup_step_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    release = _workflow(root, "release.yml")
    text = release.read_text()
    start = text.index("      - name: Backup before the upgrade\n")
    end = text.index("      - name: Deploy through Argo CD\n", start)
    break_value(release, text[start:end], "")

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert (
        "release.yml: job production runs no backup step (kubectl create job "
        "--from=cronjob/ffe-backup) before its Argo CD deploy step "
        "(PATCH /api/v1/applications/ffe-production)" in done.stdout
    ), done.stdout


def test_workflows_check_when_production_runs_helm_upgrade_itself_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    # What Argo CD's selfHeal would fight: a helm upgrade into ffe-production beside the
    # Argo CD deploy, after the backup, so only the one-deployer rule can catch it.
    root = copy_checkout(tmp_path)
    helm_step = (
        "      - name: helm upgrade into production\n"
        "        run: |\n"
        "          helm upgrade --install ffe deploy/helm/ffe -n ffe-production \\\n"
        "            -f deploy/helm/ffe/values-production.yaml --wait --atomic\n"
    )
    deploy = "      - name: Deploy through Argo CD\n"
    break_value(_workflow(root, "release.yml"), deploy, helm_step + deploy)

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert (
        "release.yml: job production step 'helm upgrade into production' runs `helm upgrade` "
        "on production; Argo CD (Application ffe-production) is production's only deployer"
        in done.stdout
    ), done.stdout


def test_workflows_check_when_production_patches_another_application_then_it_fails_naming_it(
    tmp_path: Path,
) -> None:
    # The release pinned on another Application: nothing hands it to ffe-production.
    root = copy_checkout(tmp_path)
    break_value(
        _workflow(root, "release.yml"),
        '--request PATCH "$server/api/v1/applications/ffe-production"',
        '--request PATCH "$server/api/v1/applications/ffe-staging"',
    )

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert (
        "release.yml: no job deploys production through Argo CD (a curl --request PATCH of "
        "/api/v1/applications/ffe-production)" in done.stdout
    ), done.stdout


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
    root = copy_checkout(tmp_path)
    break_value(_workflow(root, "release.yml"), condition, "true")

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert (
        "release.yml: job production does not wait, after its PATCH "
        f"/api/v1/applications/ffe-production, for Argo CD to report the release {status} "
        f'({field} == "{status}")' in done.stdout
    ), done.stdout


def test_workflows_check_when_a_job_has_no_timeout_then_it_fails_naming_the_job(
    tmp_path: Path,
) -> None:
    root = copy_checkout(tmp_path)
    break_value(_workflow(root, "release.yml"), "    timeout-minutes: 30\n", "")

    done = run_check("workflows", root=root)

    assert done.returncode == 1
    assert "release.yml: job staging has no timeout-minutes" in done.stdout
