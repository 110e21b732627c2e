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
    broken,
    example_values,
    interpolate,
    load_ffe_settings,
    passing,
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


def test_compose_check_when_run_on_the_checkout_then_passes() -> None:
    output = passing("compose")

    assert "valid against the Compose Specification's schema" in output
    assert "nginx -t passes" in output


PROMETHEUS = Path("deploy/monitoring/prometheus.yml")
BROKEN = [
    pytest.param(
        COMPOSE,
        "    stop_grace_period: 60s\n",
        "    stop_grace_period: [60s]\n",
        ["$.services.postgres.stop_grace_period: ['60s'] is not of type 'string'"],
        id="a-property-of-the-wrong-type-named-by-the-schema",
    ),
    pytest.param(
        COMPOSE,
        '    expose:\n      - "8002"',
        '    exposed:\n      - "8002"',
        ["$.services.precompute: Unevaluated properties are not allowed ('exposed'"],
        id="an-unknown-service-key-named-by-the-schema",
    ),
    pytest.param(
        COMPOSE,
        "    depends_on:\n      prometheus:\n        condition: service_healthy\n",
        "    depends_on: [prometheus]\n",
        ["service grafana: depends_on prometheus has no condition"],
        id="a-dependency-without-condition",
    ),
    pytest.param(
        COMPOSE,
        "FFE__LOGGING__LEVEL: ${FFE_LOG_LEVEL:-INFO}\n  # Through",
        "FFE__LOGGING__LEVEL: ${FFE_LOUD:-INFO}\n  # Through",
        ["${FFE_LOUD} is used in deploy/compose.yaml but not documented"],
        id="an-undocumented-variable",
    ),
    pytest.param(
        COMPOSE,
        "image: redis:7.4.5-bookworm",
        "image: redis",
        ["service redis: image redis is not pinned"],
        id="an-unpinned-image",
    ),
    pytest.param(
        Path("deploy/.env.example"),
        "FFE_TAG=0.1.0",
        "FFE_TAG=latest",
        ["image ffe:latest is not pinned"],
        id="an-image-tagged-latest",
    ),
    pytest.param(
        COMPOSE,
        "./pgbouncer/pgbouncer.ini:/etc",
        "./pgbouncer/pgbouncer-gone.ini:/etc",
        ["service pgbouncer mounts ./pgbouncer/pgbouncer-gone.ini, which does not exist"],
        id="a-missing-mounted-file",
    ),
    pytest.param(
        COMPOSE,
        "GF_SECURITY_ADMIN_PASSWORD: "
        "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in deploy/.env}",
        "GF_SECURITY_ADMIN_PASSWORD: hunter2",
        ["service grafana: GF_SECURITY_ADMIN_PASSWORD must come from a variable"],
        id="a-secret-written-in",
    ),
    pytest.param(
        COMPOSE,
        "  migrate:\n    condition: service_completed_successfully\n  pgbouncer:",
        "  migrate:\n    condition: service_started\n  pgbouncer:",
        ["service api must wait for migrate"],
        id="an-app-service-not-waiting-for-migrate",
    ),
    pytest.param(
        COMPOSE,
        '    expose:\n      - "8001"',
        '    ports:\n      - "8001:8001"',
        ["service worker is scaled, so it cannot publish a fixed host port"],
        id="a-scaled-service-publishing-a-port",
    ),
    pytest.param(
        COMPOSE,
        "  ray-worker:\n    profiles: [ray]",
        "  ray-worker:\n    profiles: [full]",
        ["profile ray lacks ray-worker"],
        id="a-service-leaving-its-profile",
    ),
    pytest.param(
        COMPOSE,
        'command: ["worker", "--health-port", "8001"',
        'command: ["worker", "--health-port", "8011"',
        [
            "deploy/monitoring/prometheus.yml: job ffe-worker scrapes worker:8001, but service "
            "worker listens on 8011 (--health-port)",
            "service worker: FFE_HEALTH_URL http://127.0.0.1:8001/health/live does not probe",
        ],
        id="the-worker-health-port-moving-alone",
    ),
    pytest.param(
        PROMETHEUS,
        "      - names: [agent]\n        type: A\n        port: 8003",
        "      - names: [agent]\n        type: A\n        port: 8004",
        ["job ffe-agent scrapes agent:8004, but service agent listens on 8003"],
        id="prometheus-scraping-another-port",
    ),
    pytest.param(
        COMPOSE,
        '"--health-host", "0.0.0.0"]',
        '"--health-host", "127.0.0.1"]',
        [
            "job ffe-precompute scrapes precompute:8002, but service precompute listens on ",
            "127.0.0.1 only (--health-host)",
        ],
        id="a-health-port-on-loopback",
    ),
    pytest.param(
        PROMETHEUS,
        "      - names: [precompute]",
        "      - names: [pre-compute]",
        [
            "job ffe-precompute scrapes pre-compute:8002, but deploy/compose.yaml has no ",
            "service precompute serves /metrics on 8002, but no job of",
        ],
        id="prometheus-scraping-no-such-service",
    ),
    pytest.param(
        Path("deploy/nginx/nginx.conf"),
        "client_max_body_size 1m;",
        "client_max_body_size 1m",
        ["nginx -t:", "deploy/nginx/nginx.conf"],
        id="nginx-conf-that-nginx-t-refuses",
    ),
]


@pytest.mark.parametrize(("path", "old", "new", "said"), BROKEN)
def test_compose_check_when_a_value_is_broken_then_fails_naming_it(
    tmp_path: Path, path: Path, old: str, new: str, said: list[str]
) -> None:
    out = broken("compose", path, old, new, into=tmp_path)

    assert not [message for message in said if message not in out], out


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
