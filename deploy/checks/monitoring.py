"""deploy/monitoring/: Prometheus's rules, unit tests and config with promtool, Alertmanager's
config with amtool (both from Debian's packages), then what neither tool knows about: every
alert has a severity we route, a summary, a description and a runbook that exists, every
runbook belongs to an alert, and every alert fires in at least one unit test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from checks.common import CheckError, fail_if, load, run, tool

SEVERITIES = ("critical", "warning", "info")
"""What alertmanager.yml routes; an alert with another severity would reach the default."""

RUNBOOKS = "https://github.com/ffe-dev/ffe/blob/main/docs/runbooks/"
"""Where every alert's runbook_url points: docs/runbooks/ on main."""

AUTOSCALER_SERIES = ("ffe:http_request_duration_seconds:p95_5m",)
"""Recorded series the Helm chart's autoscalers query by name."""

SECRET_KEYS = ("credentials_file", "bearer_token_file", "password_file")
"""Settings naming a secret's file, which promtool wants to exist; none does outside a container."""


def check(root: Path) -> list[str]:
    here = root / "deploy" / "monitoring"
    rules = sorted((here / "rules").glob("*.yml"))
    tests = sorted((here / "tests").glob("*.yml"))
    fail_if(
        (["no rule files in deploy/monitoring/rules/"] if not rules else [])
        + (["no unit tests in deploy/monitoring/tests/"] if not tests else [])
    )
    stages: list[Callable[[], str | list[str]]] = [
        lambda: _promtool(root, "check", rules, f"{', '.join(p.name for p in rules)} valid"),
        lambda: _promtool(root, "test", tests, f"{', '.join(p.name for p in tests)} pass"),
        lambda: _check_config(root, here),
        lambda: _ours(root, rules, tests),
    ]
    if (here / "alertmanager.yml").exists():
        stages.insert(3, lambda: _alertmanager(root, here / "alertmanager.yml"))
    # Every stage runs, whatever the others found: a changed annotation fails both its unit
    # test and our conventions, and both are worth reading at once.
    verified: list[str] = []
    problems: list[str] = []
    for stage in stages:
        try:
            said = stage()
        except CheckError as error:
            problems.extend(error.problems)
            continue
        verified.extend([said] if isinstance(said, str) else said)
    fail_if(problems)
    return verified


def _short(root: Path, text: str, *also: tuple[Path, str]) -> list[str]:
    """A tool's output as problem lines, with paths shown relative to the checkout."""
    for path, shown in also:
        text = text.replace(str(path), shown)
    text = text.replace(f"{root}/", "")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _promtool(root: Path, command: str, files: list[Path], done_says: str) -> str:
    """``promtool check rules`` or ``promtool test rules`` on each file in turn, so that a
    failure names its file (promtool prints the file names and the failures on different
    streams, which interleave badly)."""
    problems = []
    for path in files:
        done = run([tool("promtool"), command, "rules", str(path)], cwd=root, timeout=120)
        if done.returncode:
            said = done.stderr.strip() or done.stdout.strip()
            shown = path.relative_to(root)
            problems.append(f"promtool {command} rules failed on {shown}:")
            problems.extend(f"  {line}" for line in _short(root, said))
    fail_if(problems)
    return f"promtool {command} rules: {done_says}"


def _check_config(root: Path, here: Path) -> str:
    """``promtool check config`` on prometheus.yml, in a copy where the files it names for
    secrets exist (they are mounted in the container; promtool stats them)."""
    config = here / "prometheus.yml"
    fail_if([] if config.exists() else ["deploy/monitoring/prometheus.yml is missing"])
    with tempfile.TemporaryDirectory(prefix="ffe-prometheus-") as scratch:
        copy = Path(scratch) / "monitoring"
        shutil.copytree(here, copy, ignore=shutil.ignore_patterns("dashboards", "grafana"))
        secret = Path(scratch) / "secret"
        secret.write_text("placeholder\n")
        document = _yaml(copy / "prometheus.yml")
        named = _replace_secret_files(document, str(secret))
        (copy / "prometheus.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        done = run([tool("promtool"), "check", "config", str(copy / "prometheus.yml")], timeout=60)
        if done.returncode:
            raise CheckError(
                [
                    "promtool check config failed on deploy/monitoring/prometheus.yml:",
                    *_short(root, done.stdout + done.stderr, (copy, "deploy/monitoring")),
                ]
            )
    jobs = [job["job_name"] for job in document.get("scrape_configs") or []]
    return f"promtool check config: prometheus.yml valid, jobs {', '.join(jobs)}" + (
        f"; secrets from {', '.join(named)}" if named else ""
    )


def _replace_secret_files(node: Any, replacement: str) -> list[str]:
    """Point every secret file setting in ``node`` at ``replacement``; the paths it named."""
    named: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and isinstance(value, str):
                named.append(value)
                node[key] = replacement
            else:
                named.extend(_replace_secret_files(value, replacement))
    elif isinstance(node, list):
        for each in node:
            named.extend(_replace_secret_files(each, replacement))
    return sorted(set(named))


def _alertmanager(root: Path, config: Path) -> str:
    done = run([tool("amtool"), "check-config", str(config)], timeout=60)
    if done.returncode:
        raise CheckError(
            [
                "amtool check-config failed on deploy/monitoring/alertmanager.yml:",
                *_short(root, done.stdout + done.stderr),
            ]
        )
    return "amtool check-config: alertmanager.yml valid"


def _ours(root: Path, rules: list[Path], tests: list[Path]) -> list[str]:
    """The conventions: severities, annotations, runbooks both ways, a firing test each."""
    problems: list[str] = []
    alerts: dict[str, str] = {}  # alert name -> rule file it is in
    recorded: set[str] = set()
    linked: dict[str, str] = {}  # runbook file name -> alert linking it
    for path in rules:
        for group in _yaml(path).get("groups") or []:
            for rule in group.get("rules") or []:
                if "record" in rule:
                    recorded.add(rule["record"])
                    continue
                if "alert" not in rule:
                    continue  # neither: promtool check rules says so
                name, where = rule["alert"], f"alert {rule['alert']} ({path.name})"
                if name in alerts:
                    problems.append(f"{where}: also defined in {alerts[name]}")
                alerts[name] = path.name
                problems.extend(_alert(root, where, rule))
                runbook = str((rule.get("annotations") or {}).get("runbook_url") or "")
                runbook = runbook.rsplit("/", 1)[-1]
                if runbook:
                    linked.setdefault(runbook, name)
    runbooks = root / "docs" / "runbooks"
    on_disk = sorted(p.name for p in runbooks.glob("*.md") if p.name != "README.md")
    problems.extend(
        f"docs/runbooks/{name} is linked by no alert's runbook_url"
        for name in on_disk
        if name not in linked
    )
    index = runbooks / "README.md"
    listed = index.read_text() if index.exists() else ""
    problems.extend(
        f"docs/runbooks/README.md does not list {name}" for name in on_disk if name not in listed
    )
    problems.extend(
        f"recording rule {name} is missing: the Helm chart's autoscalers query it"
        for name in AUTOSCALER_SERIES
        if name not in recorded
    )
    fired = _fired_in_tests(tests)
    problems.extend(
        f"alert {name} ({alerts[name]}) fires in no unit test under deploy/monitoring/tests/"
        for name in sorted(alerts)
        if name not in fired
    )
    fail_if(problems)
    return [
        f"{len(alerts)} alerts: severity, summary, description and runbook each; "
        f"each fires in a unit test",
        f"{len(on_disk)} runbooks under docs/runbooks/, each linked by an alert and indexed",
        f"recorded for the autoscalers: {', '.join(AUTOSCALER_SERIES)}",
    ]


def _alert(root: Path, where: str, rule: dict[str, Any]) -> list[str]:
    """What is wrong with one alert rule: its severity, summary, description, runbook."""
    problems = []
    severity = (rule.get("labels") or {}).get("severity")
    if severity not in SEVERITIES:
        problems.append(f"{where}: severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    annotations = rule.get("annotations") or {}
    for needed in ("summary", "description"):
        if not str(annotations.get(needed) or "").strip():
            problems.append(f"{where}: no {needed} annotation")
    return problems + _runbook(root, where, annotations.get("runbook_url"))


def _runbook(root: Path, where: str, url: Any) -> list[str]:
    """What is wrong with an alert's runbook_url: none, elsewhere, or no such file."""
    if not url:
        return [f"{where}: no runbook_url annotation"]
    if not isinstance(url, str) or not url.startswith(RUNBOOKS) or not url.endswith(".md"):
        return [f"{where}: runbook_url {url!r} is not {RUNBOOKS}<file>.md"]
    name = url.removeprefix(RUNBOOKS)
    if "/" in name or not (root / "docs" / "runbooks" / name).is_file():
        return [f"{where}: runbook_url names docs/runbooks/{name}, which does not exist"]
    return []


def _fired_in_tests(tests: list[Path]) -> set[str]:
    """The alerts some promtool unit test expects to fire (an alert_rule_test with alerts)."""
    fired: set[str] = set()
    for path in tests:
        for test in _yaml(path).get("tests") or []:
            for case in test.get("alert_rule_test") or []:
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    return fired


def _yaml(path: Path) -> dict[str, Any]:
    """A rules or unit test file as a mapping; one that is not YAML is a problem of its own."""
    try:
        found = load(path)
    except yaml.YAMLError as error:
        raise CheckError([f"{path.name} is not YAML: {error}"]) from None
    return found if isinstance(found, dict) else {}
