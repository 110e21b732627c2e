"""Make a Swarm stack file from deploy/compose.yaml, for `docker stack deploy`:

    docker compose -f deploy/compose.yaml --profile full config --format json \\
        | python3 deploy/swarm.py > ffe-stack.json
    docker stack deploy -c ffe-stack.json ffe

`docker compose config` reads deploy/.env, fills in the variables, merges the shared parts
and keeps the services of the profiles given. What it prints is the Compose Specification,
which `docker stack deploy` only partly takes: its loader validates the 3.x format, which
refuses a long-form `depends_on`, a top-level `name` and a published port's `host_ip`, and
it ignores `build`, `restart` and `expose` with a warning. This takes those out, says so on
stderr, and writes JSON (which is YAML); it needs nothing but Python 3.

What Swarm does without them: every service starts at once (no `depends_on`), so the ffe
processes restart (restart_policy) until migrate has upgraded the schema and PostgreSQL and
Redis answer; images are not built (build them and push them to a registry every node
reaches); the phase-0 service `ffe` (no profile) is not part of a stack; ports Compose
publishes on the host's loopback only (Prometheus, Alertmanager, Grafana) are not published.

Files of the checkout that Compose bind-mounts (nginx.conf, pgbouncer.ini, the monitoring
files) become Swarm configs, one per file, named with a hash of their content: `docker stack
deploy` sends them to whichever node runs the task, where a bind mount would look for the
path on that node. Host paths (node-exporter's /) stay bind mounts. A secret Compose makes
from a variable (the scrape key) must exist in the swarm first: `docker secret create NAME -`
(the stack refers to it as external; this prints the command).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

VERSION = "3.9"  # the newest 3.x format, which `docker stack deploy` validates against
IGNORED = ("profiles", "depends_on", "build", "restart", "pull_policy", "expose")
"""What a service loses: Swarm has no startup order, no profiles and no builds, restarts by
deploy.restart_policy, and reaches every port of a service on its network."""
PORT_KEYS = ("mode", "target", "published", "protocol")  # what the 3.x format allows
VOLUME_KEYS = ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs")
PROJECT = Path(__file__).resolve().parent
"""The compose file's folder: bind mounts from under it are the checkout's files."""


def stack(config: dict[str, Any], say: Any = None) -> dict[str, Any]:
    """The stack file for ``config`` (``docker compose config --format json``'s output)."""
    notes: list[str] = []
    services = {}
    configs: dict[str, Any] = dict(config.get("configs") or {})
    for name, service in (config.get("services") or {}).items():
        if not service.get("profiles"):
            notes.append(f"{name}: left out (no profile: phase 0, for Compose only)")
            continue
        services[name] = _as_configs(_service(name, service, notes), configs)
    result: dict[str, Any] = {"version": VERSION, "services": services}
    for key in ("networks", "volumes"):
        if config.get(key):
            result[key] = config[key]
    declared = config.get("secrets") or {}
    secrets = {key: _secret(key, each, notes) for key, each in declared.items()}
    if secrets:
        result["secrets"] = secrets
    if configs:
        result["configs"] = configs
    for note in notes:
        (say or _stderr)(note)
    return result


def _service(name: str, service: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    kept = {key: value for key, value in service.items() if key not in IGNORED}
    if "ports" in kept:
        ports = [_port(name, each, notes) for each in kept.pop("ports") or []]
        if any(port is not None for port in ports):
            kept["ports"] = [port for port in ports if port is not None]
    if kept.get("volumes"):
        kept["volumes"] = [_volume(each) for each in kept["volumes"]]
    resources = (kept.get("deploy") or {}).get("resources") or {}
    for part in resources.values():  # the 3.x format wants strings: cpus "0.5", memory "1G"
        for key in ("cpus", "memory"):
            if key in part and not isinstance(part[key], str):
                part[key] = str(part[key])
    return kept


def _port(name: str, port: Any, notes: list[str]) -> Any:
    """A published port as the 3.x format takes it, or None for one on the loopback."""
    if not isinstance(port, dict):
        return port
    if port.get("host_ip") in ("127.0.0.1", "::1", "localhost"):
        notes.append(
            f"{name}: port {port.get('published')} is published on the host's loopback by "
            "Compose; not published in the stack (reach it through a proxy, or publish it "
            "with `docker service update --publish-add`)"
        )
        return None
    kept = {key: value for key, value in port.items() if key in PORT_KEYS}
    if isinstance(kept.get("published"), str) and kept["published"].isdigit():
        kept["published"] = int(kept["published"])
    return kept


def _volume(volume: Any) -> Any:
    """A mount as the 3.x format takes it (Compose adds bind.create_host_path)."""
    if not isinstance(volume, dict):
        return volume
    kept = {key: value for key, value in volume.items() if key in VOLUME_KEYS}
    if isinstance(kept.get("bind"), dict):
        bind = {key: value for key, value in kept["bind"].items() if key != "create_host_path"}
        if bind:
            kept["bind"] = bind
        else:
            del kept["bind"]
    return kept


def _secret(key: str, secret: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """A secret as a stack takes it: from a file, or made beforehand (`environment` is
    Compose's own)."""
    if "environment" not in secret:
        return secret
    notes.append(
        f"secret {key}: create it first from ${secret['environment']}: "
        f"printf '%s' \"${secret['environment']}\" | docker secret create {key} -"
    )
    return {"name": key, "external": True}


def _as_configs(service: dict[str, Any], configs: dict[str, Any]) -> dict[str, Any]:
    """``service`` with its bind mounts of the checkout's files as Swarm configs (added to
    ``configs``); a folder becomes one config a file."""
    mounts, refs = [], list(service.get("configs") or [])
    for volume in service.get("volumes") or []:
        source = Path(volume["source"]) if _is_bind(volume) else None
        if source is None or not source.resolve().is_relative_to(PROJECT):
            mounts.append(volume)
            continue
        if not source.exists():
            raise FileNotFoundError(f"{source} is mounted but does not exist")
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for file in files:
            target = volume["target"] if file == source else f"{volume['target']}/"
            if file != source:
                target += file.relative_to(source).as_posix()
            key = _config_name(file)
            configs[key] = {"file": str(file)}
            refs.append({"source": key, "target": target, "mode": 0o444})
    kept = {key: value for key, value in service.items() if key not in ("volumes", "configs")}
    if mounts:
        kept["volumes"] = mounts
    if refs:
        kept["configs"] = refs
    return kept


def _is_bind(volume: Any) -> bool:
    return isinstance(volume, dict) and volume.get("type") == "bind" and "source" in volume


def _config_name(file: Path) -> str:
    """A config's name: its path in the checkout and its content's hash (a config cannot
    change, so a changed file is a new config, which `docker stack deploy` rolls out)."""
    path = file.resolve().relative_to(PROJECT).as_posix()
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', path).strip('-')[:40]}-{digest}"


def _stderr(line: str) -> None:
    print(f"swarm.py: {line}", file=sys.stderr)


def main() -> int:
    try:
        config = json.load(sys.stdin)
    except json.JSONDecodeError as error:
        _stderr(f"not JSON ({error}): pipe in `docker compose ... config --format json`")
        return 1
    try:
        made = stack(config)
    except FileNotFoundError as error:
        _stderr(str(error))
        return 1
    json.dump(made, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
