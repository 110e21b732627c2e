"""What the deploy files give each ffe process, loaded by ffe itself: every container of the
Helm chart (every values set the helm check renders) and every ffe service of deploy/compose.yaml
must have only FFE__* variables ffe accepts, with values it accepts, and a command line the
`ffe` command parses. The deploy checks run without ffe (deploy/checks/), so this is here: a
renamed setting or option would otherwise pass every check and fail only in the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.deploy import (
    ROOT,
    broken_copy,
    example_values,
    interpolate,
    load_ffe_settings,
    parse_ffe_arguments,
    render_chart,
)

CHART = Path("deploy") / "helm" / "ffe"
COMPOSE = Path("deploy") / "compose.yaml"
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")
SECRET_PLACEHOLDERS = {
    # What the chart's existingSecret holds, in the shape ffe expects of it.
    "FFE__API__SECRET_KEY": "s" * 48,
    "FFE__DATABASE__URL": "postgresql+psycopg://ffe:placeholder@postgresql.example.internal:5432/ffe",
    "FFE__REDIS__URL": "redis://:placeholder@redis.example.internal:6379/0",
}
WRAPPER = 'exec ffe "$@"'
"""How a shell command hands its arguments on to ffe (the worker's Ray wrapper)."""


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    if manifest["kind"] == "CronJob":
        return manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return manifest["spec"]["template"]["spec"]


def _containers(files: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for every container of every workload rendered."""
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        if manifest.get("kind") not in WORKLOADS:
            continue
        values_set = path.parent.name.split("-", 1)[1]
        spec = _pod_spec(manifest)
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            where = (
                f"{values_set}: {manifest['kind']} {manifest['metadata']['name']} "
                f"container {container['name']}"
            )
            yield where, container


def _ffe_arguments(command: list[str] | None, arguments: list[str]) -> list[str] | None:
    """The arguments ffe receives, or None when the container runs something else. With no
    command the image's ENTRYPOINT, ffe, gets the args."""
    if not command:
        return arguments
    if command[0] == "ffe":
        return [*command[1:], *arguments]
    if any(WRAPPER in word for word in command):
        return arguments
    return None


def _environment(where: str, container: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    environment, problems = {}, []
    for variable in container.get("env", []):
        name = variable["name"]
        if not name.startswith("FFE__"):
            continue
        if "value" in variable:
            environment[name] = str(variable["value"])
        elif name in SECRET_PLACEHOLDERS:
            environment[name] = SECRET_PLACEHOLDERS[name]
        else:
            problems.append(
                f"{where}: {name} comes from {variable.get('valueFrom')}; give this test a "
                "placeholder of its shape in SECRET_PLACEHOLDERS"
            )
    return environment, problems


def _problems(where: str, environment: dict[str, str], arguments: list[str] | None) -> list[str]:
    """What ffe refuses of one process: its settings, then its command line."""
    problems = []
    try:
        load_ffe_settings(environment)
    except Exception as error:  # ffe's ConfigError names the variable
        problems.append(f"{where}: ffe refuses its settings: {error}")
    if arguments is not None:
        try:
            parse_ffe_arguments(arguments)
        except Exception as error:  # click's UsageError: no such option, a bad value
            said = error.format_message() if hasattr(error, "format_message") else str(error)
            problems.append(f"{where}: `ffe {' '.join(arguments)}`: {said}")
    return problems


def _chart_problems(files: list[Path]) -> tuple[int, list[str]]:
    count, problems = 0, []
    for where, container in _containers(files):
        count += 1
        environment, found = _environment(where, container)
        arguments = _ffe_arguments(container.get("command"), container.get("args", []))
        problems += found + _problems(where, environment, arguments)
    return count, problems


def _compose_problems(root: Path) -> tuple[int, list[str]]:
    model = yaml.safe_load((root / COMPOSE).read_text())
    values = example_values()
    count, problems = 0, []
    for name, service in model["services"].items():
        if "${FFE_" not in str(service.get("image", "")) or name.startswith("ray-"):
            continue  # not an ffe process (the Ray nodes run `ray start` in the ffe-ray image)
        count += 1
        entrypoint = [interpolate(str(word), values) for word in service.get("entrypoint", [])]
        command = [interpolate(str(word), values) for word in service.get("command", [])]
        environment = {
            key: interpolate(str(value), values)
            for key, value in (service.get("environment") or {}).items()
            if key.startswith("FFE__")
        }
        arguments = _ffe_arguments(entrypoint, command)
        problems += _problems(f"service {name}", environment, arguments)
    return count, problems


def test_chart_containers_when_loaded_by_ffe_then_settings_and_arguments_pass(
    tmp_path: Path,
) -> None:
    files = render_chart(tmp_path / "rendered")

    count, problems = _chart_problems(files)

    assert not problems, "\n".join(problems)
    assert count >= 5 * 6  # api, worker, precompute, agent, migrate, backup in each values set


def test_compose_services_when_loaded_by_ffe_then_settings_and_arguments_pass() -> None:
    count, problems = _compose_problems(ROOT)

    assert not problems, "\n".join(problems)
    assert count == 6  # ffe, migrate, api, worker, precompute, agent


@pytest.mark.parametrize(
    ("template", "old", "new", "named", "spared"),
    [
        pytest.param(
            "deployment-worker.yaml",
            "- name: FFE__JOBS__HEALTH_HOST",
            "- name: FFE__JOBS__HEALTHHOST",
            [
                "production: Deployment ffe-worker container worker: ffe refuses its settings",
                "jobs.healthhost: unknown key (from environment variable FFE__JOBS__HEALTHHOST)",
            ],
            "ffe-agent",
            id="a-misnamed-setting",
        ),
        pytest.param(
            "deployment-agent.yaml",
            "- --health-host\n",
            "- --health-hosts\n",
            [
                "staging: Deployment ffe-agent container agent: `ffe agent run",
                "No such option: --health-hosts",
            ],
            "ffe-worker",
            id="a-misnamed-option",
        ),
    ],
)
def test_chart_when_a_container_is_misconfigured_then_names_the_container_alone(
    tmp_path: Path, template: str, old: str, new: str, named: list[str], spared: str
) -> None:
    root = broken_copy(CHART / "templates" / template, old, new, into=tmp_path / "copy")

    _, problems = _chart_problems(render_chart(tmp_path / "rendered", root))

    said = "\n".join(problems)
    assert not [message for message in named if message not in said], said
    assert spared not in said


def test_compose_when_an_option_is_misnamed_then_names_the_service(tmp_path: Path) -> None:
    root = broken_copy(
        COMPOSE, '"--concurrency", "${FFE_WORKER', '"--concurency", "${FFE_WORKER', into=tmp_path
    )

    _, problems = _compose_problems(root)

    said = "\n".join(problems)
    assert "service worker: `ffe worker --health-port 8001 --concurency 1`" in said
    assert "No such option: --concurency" in said


def test_compose_when_a_setting_is_misnamed_then_names_the_service(tmp_path: Path) -> None:
    root = broken_copy(
        COMPOSE, "FFE__JOBS__HEALTH_HOST: 0.0.0.0", "FFE__JOB__HEALTH_HOST: 0.0.0.0", into=tmp_path
    )

    _, problems = _compose_problems(root)

    assert any(
        problem.startswith("service worker: ffe refuses its settings: job: unknown section")
        for problem in problems
    ), problems
