"""deploy/compose.yaml, checked offline (no Docker engine here) by deploy/checks/compose.py:
the checkout passes, and each kind of mistake fails naming what is wrong. Its ffe settings
load as settings ffe accepts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.deploy import (
    break_value,
    copy_checkout,
    example_values,
    interpolate,
    load_ffe_settings,
    run_check,
)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = Path("deploy/compose.yaml")
PROFILES = {
    "full": {
        "postgres",
        "pgbouncer",
        "redis",
        "migrate",
        "api",
        "nginx",
        "worker",
        "precompute",
        "agent",
        "prometheus",
        "alertmanager",
        "grafana",
        "node-exporter",
    },
    "ray": {"ray-head", "ray-worker"},
}


def _broken(tmp_path: Path, old: str, new: str, file: Path = COMPOSE) -> tuple[int, str]:
    root = copy_checkout(tmp_path)
    break_value(root / file, old, new)
    done = run_check("compose", root=root)
    return done.returncode, done.stdout + done.stderr


def test_compose_check_when_run_on_the_checkout_then_passes() -> None:
    done = run_check("compose")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid against the Compose Specification's schema" in done.stdout
    assert "nginx -t passes" in done.stdout


def test_compose_when_a_property_has_the_wrong_type_then_the_schema_names_it(
    tmp_path: Path,
) -> None:
    code, out = _broken(tmp_path, "    stop_grace_period: 60s\n", "    stop_grace_period: [60s]\n")

    assert code == 1
    assert "$.services.postgres.stop_grace_period: ['60s'] is not of type 'string'" in out


def test_compose_when_a_service_has_an_unknown_key_then_the_schema_names_it(
    tmp_path: Path,
) -> None:
    code, out = _broken(tmp_path, '    expose:\n      - "8002"', '    exposed:\n      - "8002"')

    assert code == 1
    assert "$.services.precompute: Unevaluated properties are not allowed ('exposed'" in out


def test_compose_when_a_dependency_has_no_condition_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path,
        "    depends_on:\n      prometheus:\n        condition: service_healthy\n",
        "    depends_on: [prometheus]\n",
    )

    assert code == 1
    assert "service grafana: depends_on prometheus has no condition" in out


def test_compose_when_a_variable_is_not_documented_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path,
        "FFE__LOGGING__LEVEL: ${FFE_LOG_LEVEL:-INFO}\n  # Through",
        "FFE__LOGGING__LEVEL: ${FFE_LOUD:-INFO}\n  # Through",
    )

    assert code == 1
    assert "${FFE_LOUD} is used in deploy/compose.yaml but not documented" in out


def test_compose_when_an_image_is_not_pinned_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(tmp_path, "image: redis:7.4.5-bookworm", "image: redis")

    assert code == 1
    assert "service redis: image redis is not pinned" in out


def test_compose_when_an_image_is_latest_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(tmp_path, "FFE_TAG=0.1.0", "FFE_TAG=latest", Path("deploy/.env.example"))

    assert code == 1
    assert "image ffe:latest is not pinned" in out


def test_compose_when_a_mounted_file_is_missing_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path, "./pgbouncer/pgbouncer.ini:/etc", "./pgbouncer/pgbouncer-gone.ini:/etc"
    )

    assert code == 1
    assert "service pgbouncer mounts ./pgbouncer/pgbouncer-gone.ini, which does not exist" in out


def test_compose_when_a_secret_is_written_in_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path,
        "GF_SECURITY_ADMIN_PASSWORD: "
        "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in deploy/.env}",
        "GF_SECURITY_ADMIN_PASSWORD: hunter2",
    )

    assert code == 1
    assert "service grafana: GF_SECURITY_ADMIN_PASSWORD must come from a variable" in out


def test_compose_when_an_app_service_does_not_wait_for_migrate_then_fails(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path,
        "  migrate:\n    condition: service_completed_successfully\n  pgbouncer:",
        "  migrate:\n    condition: service_started\n  pgbouncer:",
    )

    assert code == 1
    assert "service api must wait for migrate" in out


def test_compose_when_a_scaled_service_publishes_a_port_then_fails(tmp_path: Path) -> None:
    code, out = _broken(tmp_path, '    expose:\n      - "8001"', '    ports:\n      - "8001:8001"')

    assert code == 1
    assert "service worker is scaled, so it cannot publish a fixed host port" in out


def test_compose_when_a_service_leaves_its_profile_then_fails_naming_it(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path, "  ray-worker:\n    profiles: [ray]", "  ray-worker:\n    profiles: [full]"
    )

    assert code == 1
    assert "profile ray lacks ray-worker" in out


def test_compose_when_the_worker_health_port_moves_alone_then_fails_naming_the_scrape(
    tmp_path: Path,
) -> None:
    code, out = _broken(
        tmp_path,
        'command: ["worker", "--health-port", "8001"',
        'command: ["worker", "--health-port", "8011"',
    )

    assert code == 1
    assert (
        "deploy/monitoring/prometheus.yml: job ffe-worker scrapes worker:8001, but service "
        "worker listens on 8011 (--health-port)" in out
    )
    assert "service worker: FFE_HEALTH_URL http://127.0.0.1:8001/health/live does not probe" in out


def test_compose_when_prometheus_scrapes_another_port_then_fails_naming_the_job(
    tmp_path: Path,
) -> None:
    code, out = _broken(
        tmp_path,
        "      - names: [agent]\n        type: A\n        port: 8003",
        "      - names: [agent]\n        type: A\n        port: 8004",
        Path("deploy/monitoring/prometheus.yml"),
    )

    assert code == 1
    assert "job ffe-agent scrapes agent:8004, but service agent listens on 8003" in out


def test_compose_when_a_health_port_listens_on_loopback_then_fails_naming_the_service(
    tmp_path: Path,
) -> None:
    code, out = _broken(tmp_path, '"--health-host", "0.0.0.0"]', '"--health-host", "127.0.0.1"]')

    assert code == 1
    assert "job ffe-precompute scrapes precompute:8002, but service precompute listens on " in out
    assert "127.0.0.1 only (--health-host)" in out


def test_compose_when_prometheus_scrapes_no_such_service_then_fails_naming_it(
    tmp_path: Path,
) -> None:
    code, out = _broken(
        tmp_path,
        "      - names: [precompute]",
        "      - names: [pre-compute]",
        Path("deploy/monitoring/prometheus.yml"),
    )

    assert code == 1
    assert "job ffe-precompute scrapes pre-compute:8002, but deploy/compose.yaml has no " in out
    assert "service precompute serves /metrics on 8002, but no job of" in out


def test_nginx_conf_when_broken_then_nginx_t_names_the_problem(tmp_path: Path) -> None:
    code, out = _broken(
        tmp_path,
        "client_max_body_size 1m;",
        "client_max_body_size 1m",
        Path("deploy/nginx/nginx.conf"),
    )

    assert code == 1
    assert "nginx -t:" in out
    assert "deploy/nginx/nginx.conf" in out


@pytest.mark.parametrize("service", ["ffe", "migrate", "api", "worker", "precompute", "agent"])
def test_compose_ffe_settings_when_loaded_then_ffe_accepts_them(service: str) -> None:
    model = yaml.safe_load((ROOT / COMPOSE).read_text())
    environment = model["services"][service]["environment"]

    settings = load_ffe_settings(
        {
            name: interpolate(str(value), example_values())
            for name, value in environment.items()
            if name.startswith("FFE__")
        }
    )

    assert settings.api.environment == "production"
    if service != "ffe":
        assert settings.database_url().startswith("postgresql")
    if service not in ("ffe", "migrate"):
        assert settings.database.pgbouncer is True
        assert settings.redis.url is not None
        assert settings.tune.storage_url is not None  # straight to PostgreSQL, not PgBouncer


# --- deploy/swarm.py: the stack file for `docker stack deploy` -----------------------------


def _swarm() -> Any:
    spec = importlib.util.spec_from_file_location("swarm", ROOT / "deploy" / "swarm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _long_port(text: str) -> dict[str, Any]:
    *host, target = text.split(":")
    port: dict[str, Any] = {"mode": "ingress", "target": int(target), "protocol": "tcp"}
    if host:
        port["published"] = host[-1]
    if len(host) == 2:
        port["host_ip"] = host[0]
    return port


def _long_volume(text: str) -> dict[str, Any]:
    source, target, *mode = text.split(":")
    options = mode[0].split(",") if mode else []
    if not source.startswith((".", "/")):
        return {"type": "volume", "source": source, "target": target, "volume": {}}
    bind: dict[str, Any] = {"create_host_path": True}
    bind.update(("propagation", o) for o in options if o.endswith("slave") or "shared" in o)
    absolute = str((ROOT / COMPOSE.parent / source).resolve())  # as Compose prints it
    volume = {"type": "bind", "source": absolute, "target": target, "bind": bind}
    return {**volume, "read_only": True} if "ro" in options else volume


def _filled(value: Any, values: dict[str, str]) -> Any:
    """Every string of a loaded compose file with its variables filled in (a literal `$`
    stays escaped, as `docker compose config` prints it)."""
    if isinstance(value, str):
        return interpolate(value.replace("$$", "\0"), values).replace("\0", "$$")
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    return value


def _compose_config(*profiles: str) -> dict[str, Any]:
    """What `docker compose --profile ... config --format json` prints for deploy/compose.yaml,
    near enough (no Compose here): variables filled from .env.example, long-form ports and
    mounts, resources as numbers, the project's name."""
    model = _filled(yaml.safe_load((ROOT / COMPOSE).read_text()), example_values())
    services = {}
    for name, service in model["services"].items():
        if service.get("profiles") and not set(service["profiles"]) & set(profiles):
            continue
        service["ports"] = [_long_port(str(p)) for p in service.get("ports", [])]
        service["volumes"] = [
            v if isinstance(v, dict) else _long_volume(v) for v in service.get("volumes", [])
        ]
        for part in service.get("deploy", {}).get("resources", {}).values():
            part["cpus"] = float(part["cpus"])
            part["memory"] = int(part["memory"][:-1]) * {"M": 2**20, "G": 2**30}[part["memory"][-1]]
        service["networks"] = {"default": None}
        services[name] = {key: value for key, value in service.items() if value != []}
    volumes = {name: {"name": f"ffe_{name}"} for name in model["volumes"]}
    secrets = {name: {"name": f"ffe_{name}", **each} for name, each in model["secrets"].items()}
    return {
        "name": "ffe",
        "services": services,
        "networks": {"default": {"name": "ffe_default"}},
        "volumes": volumes,
        "secrets": secrets,
    }


def test_swarm_stack_when_made_from_profile_full_and_ray_then_in_the_3x_format() -> None:
    notes: list[str] = []

    stack = _swarm().stack(_compose_config("full", "ray"), notes.append)

    assert set(stack) == {"version", "services", "networks", "volumes", "configs", "secrets"}
    assert stack["version"] == "3.9"
    assert set(stack["services"]) == PROFILES["full"] | PROFILES["ray"]  # not phase 0's ffe
    for service in stack["services"].values():
        assert not {"profiles", "depends_on", "build", "restart", "expose"} & set(service)
        for port in service.get("ports", []):
            assert set(port) <= {"mode", "target", "published", "protocol"}
            assert isinstance(port["published"], int)
        for mount in service.get("volumes", []):
            assert "create_host_path" not in mount.get("bind", {})
        for part in service["deploy"]["resources"].values():
            assert isinstance(part["cpus"], str)
            assert isinstance(part["memory"], str)
    assert stack["services"]["nginx"]["ports"][0]["published"] == 8000
    assert "ports" not in stack["services"]["prometheus"]  # loopback only under Compose
    assert stack["services"]["node-exporter"]["volumes"][0]["bind"] == {"propagation": "rslave"}
    # The checkout's files travel as configs; the host's / stays a bind mount.
    nginx = stack["services"]["nginx"]
    assert not any(mount["type"] == "bind" for mount in nginx["volumes"])
    (conf,) = nginx["configs"]
    assert conf["target"] == "/etc/nginx/nginx.conf"
    assert stack["configs"][conf["source"]]["file"] == str(ROOT / "deploy/nginx/nginx.conf")
    assert conf["source"].startswith("nginx-nginx-conf-")
    for name in ("prometheus", "alertmanager", "grafana", "pgbouncer"):
        mounts = stack["services"][name].get("volumes", [])
        assert not any(mount["type"] == "bind" for mount in mounts), name
    assert any(note.startswith("ffe: left out") for note in notes)
    assert any(note.startswith("grafana: port 3000") for note in notes)
    # Swarm makes no secret from a variable: it is made beforehand and referred to.
    assert stack["secrets"]["ffe_metrics_read_key"] == {
        "name": "ffe_metrics_read_key",
        "external": True,
    }
    assert any("docker secret create ffe_metrics_read_key -" in note for note in notes)


def test_swarm_stack_when_given_no_json_then_says_what_to_pipe_in() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "swarm.py")],
        input="services: {}",
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 1
    assert "config --format json" in done.stderr
