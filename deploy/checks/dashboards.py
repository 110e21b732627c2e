"""The Grafana dashboards (deploy/monitoring/dashboards/) and their recording rules.

The dashboards are generated, so the committed JSON and rules/panels.yml must be what
generate.py makes of its tables; promtool parses every panel query through panels.yml; and,
since a JSON edited by hand is easy to miss in review, every query in every committed dashboard
must be the expr of a recording rule in panels.yml, on the datasource Grafana is provisioned
with.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from checks.common import CheckError, documents, fail_if, load, run, tool

DASHBOARDS = Path("deploy/monitoring/dashboards")
PANEL_RULES = Path("deploy/monitoring/rules/panels.yml")
PROVISIONING = Path("deploy/monitoring/grafana/provisioning")
COMPOSE = Path("deploy/compose.yaml")
GRAFANA_CONF = "/etc/grafana/provisioning"
"""Where Grafana's image reads its provisioning (GF_PATHS_PROVISIONING)."""


def _generator(root: Path) -> ModuleType:
    """The checkout's generate.py (not this one's: ``root`` may be a copy with a change)."""
    path = root / DASHBOARDS / "generate.py"
    if not path.exists():
        raise CheckError([f"{DASHBOARDS / 'generate.py'} is missing"])
    spec = importlib.util.spec_from_file_location("ffe_dashboards_generate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise CheckError([f"generate.py does not load: {type(error).__name__}: {error}"]) from None
    return module


def _drift(root: Path) -> tuple[list[str], int]:
    """What differs between the committed files and what generate.py makes, and how many
    files it makes."""
    generator = _generator(root)
    try:
        expected = generator.render()
    except Exception as error:
        raise CheckError([f"generate.py fails: {type(error).__name__}: {error}"]) from None
    problems = []
    for path, text in expected.items():
        name = path.relative_to(root)
        if not path.exists():
            problems.append(f"{name} is missing: run generate.py")
        elif path.read_text() != text:
            problems.append(f"{name} differs from what generate.py produces: run generate.py")
    for path in sorted((root / DASHBOARDS).glob("*.json")):
        if path not in expected:
            problems.append(f"{path.relative_to(root)} is not made by generate.py")
    return problems, len(expected)


def _promtool(root: Path) -> list[str]:
    """promtool's complaints about panels.yml, one a line."""
    done = run([tool("promtool"), "check", "rules", str(root / PANEL_RULES)], timeout=60)
    if done.returncode == 0:
        return []
    said = (done.stderr + done.stdout).replace(f"{root}/", "").splitlines()
    noise = ("Checking ", "FAILED", "SUCCESS")  # its progress, not its findings
    found = [line.strip() for line in said if line.strip() and not line.strip().startswith(noise)]
    return [f"promtool check rules: {line}" for line in found or said]


def _provisioned(root: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """The (type, uid) of every provisioned datasource, and the dashboard providers' paths."""
    sources = {
        (each.get("type", ""), each.get("uid", ""))
        for path in sorted((root / PROVISIONING / "datasources").glob("*.yml"))
        for doc in documents(path.read_text())
        for each in doc.get("datasources") or []
    }
    paths = {
        each.get("options", {}).get("path", "")
        for path in sorted((root / PROVISIONING / "dashboards").glob("*.yml"))
        for doc in documents(path.read_text())
        for each in doc.get("providers") or []
        if each.get("type", "file") == "file"
    }
    return sources, paths


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel that draws something, rows opened (a collapsed row holds its panels)."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels") or [])
        else:
            yield panel


def _source(ref: Any) -> tuple[str, str]:
    return (ref.get("type", ""), ref.get("uid", "")) if isinstance(ref, dict) else ("", str(ref))


def _dashboard_problems(
    path: Path, board: dict[str, Any], exprs: set[str], sources: set[tuple[str, str]]
) -> tuple[list[str], int]:
    """One dashboard's panels: each queries the provisioned datasource, with recorded exprs."""
    uid = board.get("uid") or path.stem
    problems = [] if board.get("uid") == path.stem else [f"{path.name}: uid is {uid!r}"]
    count = 0
    for panel in _panels(board.get("panels") or []):
        count += 1
        where = f"dashboard {uid}, panel {panel.get('title', '(untitled)')!r}"
        if _source(panel.get("datasource")) not in sources:
            problems.append(
                f"{where}: datasource {panel.get('datasource')!r} is not the provisioned one"
            )
        targets = panel.get("targets") or []
        if not any(target.get("expr", "").strip() for target in targets):
            problems.append(f"{where}: has no query")
        for target in targets:
            query = f"{where}, query {target.get('refId', '?')}"
            if "datasource" in target and _source(target["datasource"]) not in sources:
                problems.append(f"{query}: datasource {target['datasource']!r} is not provisioned")
            if target.get("expr", "").strip() and target["expr"] not in exprs:
                problems.append(
                    f"{query}: expr is no recording rule's in {PANEL_RULES.name} (edited by "
                    f"hand? change generate.py and regenerate): {target['expr']}"
                )
    return problems, count


def _compose_mounts(root: Path, paths: set[str]) -> tuple[list[str], str]:
    """When compose runs Grafana, it must mount the provisioning where Grafana reads it and the
    dashboards where the provider reads them: the problems, and what was verified."""
    compose = root / COMPOSE
    services = ((load(compose) or {}).get("services") or {}) if compose.exists() else {}
    grafana = [s for s in services.values() if "grafana" in str(s.get("image", ""))]
    if not grafana:
        return [], f"no Grafana in {COMPOSE}: its mounts are not checked"
    mounted: dict[str, set[str]] = {}  # source folder -> where it is mounted
    for service in grafana:
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                source, target = str(volume.get("source", "")), str(volume.get("target", ""))
            else:
                source, _, rest = str(volume).partition(":")
                target = rest.partition(":")[0]
            mounted.setdefault(source.rstrip("/"), set()).add(target.rstrip("/"))
    wanted = {"monitoring/dashboards": paths, "monitoring/grafana/provisioning": {GRAFANA_CONF}}
    problems = []
    for folder, targets in wanted.items():
        found = set().union(*(t for s, t in mounted.items() if s.endswith(folder)))
        if not found & targets:
            problems.append(
                f"{COMPOSE}: Grafana does not mount deploy/{folder} at "
                f"{' or '.join(sorted(targets))}"
            )
    return problems, f"{COMPOSE}: Grafana mounts the provisioning and the dashboards"


def check(root: Path) -> list[str]:
    drift, generated = _drift(root)
    promtool = _promtool(root) if (root / PANEL_RULES).exists() else []
    rules = load(root / PANEL_RULES) if (root / PANEL_RULES).exists() else {}
    exprs = {
        rule["expr"]
        for group in (rules or {}).get("groups") or []
        for rule in group.get("rules") or []
        if "record" in rule
    }
    sources, paths = _provisioned(root)
    problems = drift + promtool
    if not sources:
        problems.append(f"no datasource provisioned under {PROVISIONING / 'datasources'}")
    if not paths:
        problems.append(f"no file provider for the dashboards under {PROVISIONING / 'dashboards'}")
    uids: dict[str, str] = {}
    panels = 0
    boards = sorted((root / DASHBOARDS).glob("*.json"))
    for path in boards:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"{path.name}: not JSON: {error}")
            continue
        found, count = _dashboard_problems(path, board, exprs, sources)
        problems += found
        panels += count
        uid = board.get("uid", "")
        if uid in uids:
            problems.append(f"{path.name}: uid {uid!r} is also {uids[uid]}'s")
        uids[uid] = path.name
    mount_problems, mount = _compose_mounts(root, paths)
    problems += mount_problems
    fail_if(problems)
    return [
        f"generate.py --check: {generated} files as generated (dashboards and {PANEL_RULES.name})",
        f"promtool check rules: {PANEL_RULES} ({len(exprs)} panel queries)",
        f"{panels} panels in {len(boards)} dashboards (uids unique) query only recorded exprs "
        f"on the provisioned datasource",
        mount,
    ]
