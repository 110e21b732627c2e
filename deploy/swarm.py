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
"""

from __future__ import annotations

import json
import sys
from typing import Any

VERSION = "3.9"  # the newest 3.x format, which `docker stack deploy` validates against
IGNORED = ("profiles", "depends_on", "build", "restart", "pull_policy", "expose")
"""What a service loses: Swarm has no startup order, no profiles and no builds, restarts by
deploy.restart_policy, and reaches every port of a service on its network."""
PORT_KEYS = ("mode", "target", "published", "protocol")  # what the 3.x format allows
VOLUME_KEYS = ("type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs")


def stack(config: dict[str, Any], say: Any = None) -> dict[str, Any]:
    """The stack file for ``config`` (``docker compose config --format json``'s output)."""
    notes: list[str] = []
    services = {}
    for name, service in (config.get("services") or {}).items():
        if not service.get("profiles"):
            notes.append(f"{name}: left out (no profile: phase 0, for Compose only)")
            continue
        services[name] = _service(name, service, notes)
    result: dict[str, Any] = {"version": VERSION, "services": services}
    for key in ("networks", "volumes", "secrets", "configs"):
        if config.get(key):
            result[key] = config[key]
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


def _stderr(line: str) -> None:
    print(f"swarm.py: {line}", file=sys.stderr)


def main() -> int:
    try:
        config = json.load(sys.stdin)
    except json.JSONDecodeError as error:
        _stderr(f"not JSON ({error}): pipe in `docker compose ... config --format json`")
        return 1
    json.dump(stack(config), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
