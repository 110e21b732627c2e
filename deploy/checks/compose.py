"""deploy/compose.yaml: the Compose Specification's schema (check-jsonschema's vendored copy,
so no network), then what the schema cannot see: health checks, dependencies and their
conditions, the profiles, mounted files, documented variables, pinned images, secrets only
from variables, scalable services, and that every scrape target of
deploy/monitoring/prometheus.yml is a service listening there; and deploy/nginx/nginx.conf
with `nginx -t`."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from checks.common import fail_if, load, run, tool

COMPOSE = Path("deploy/compose.yaml")
ENV_EXAMPLE = Path("deploy/.env.example")
NGINX_CONF = Path("deploy/nginx/nginx.conf")
PROMETHEUS = Path("deploy/monitoring/prometheus.yml")
API_PORT = 8000  # ffe serve's default (api.port); the image listens on 0.0.0.0 (FFE__API__HOST)
# The settings section of each `--health-port` process's subcommand: FFE__<SECTION>__HEALTH_*
# stand in for the options when these are not given.
HEALTH_SECTIONS = {"worker": "JOBS", "precompute": "PRECOMPUTE", "agent": "AGENT"}

# The phases (docs/deploy.md): no profile is phase 0, `full` phase 1, `ray` the Ray cluster.
PROFILES: dict[str | None, set[str]] = {
    None: {"ffe"},
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
SCALABLE = {"api", "worker", "ray-worker"}  # `--scale NAME=N`: nothing fixed per container
MIGRATE = "migrate"
FFE_IMAGE_VARIABLES = ("FFE_IMAGE", "FFE_WORKER_IMAGE")  # what marks an ffe process's image
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SECRET_NAME = re.compile(r"password|secret|key|token", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, ${NAME:+x};
# `$$` is a literal dollar (a shell's, in the container).
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_]\w*)")
WHOLE_VARIABLE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\}")
URL_PASSWORD = re.compile(r"://[^/:@\s]*:([^@\s]+)@")


def check(root: Path) -> list[str]:
    compose = root / COMPOSE
    fail_if([] if compose.exists() else [f"{COMPOSE} is missing"])
    verified = [_schema(compose)]
    model = load(compose)
    documented = _documented(root / ENV_EXAMPLE)
    services: dict[str, dict[str, Any]] = model.get("services") or {}
    problems = (
        _variables(model, documented)
        + _profiles(services)
        + _healthchecks(services)
        + _dependencies(services)
        + _migrations_first(services)
        + _mounts(root, services)
        + _images(services, documented)
        + _secrets(services)
        + _scalable(services)
        + _secret_references(model, services)
    )
    scraped, scrape_problems = _scrape_targets(root, services, documented)
    problems += scrape_problems
    fail_if(problems)
    verified += [
        f"{COMPOSE}: profiles {_profile_summary(services)}",
        f"{COMPOSE}: every long-running service has a health check; every depends_on names "
        "a service with a condition; the ffe processes wait for migrate",
        f"{COMPOSE}: mounted files exist; images pinned; secrets from variables, every one "
        f"documented in {ENV_EXAMPLE}; {', '.join(sorted(SCALABLE))} scalable",
    ]
    if scraped:
        verified.append(
            f"{PROMETHEUS}: every scrape target is a service listening there, on the port of "
            f"its FFE_HEALTH_URL and every address ({scraped})"
        )
    verified.append(_nginx(root))
    return verified


def _schema(compose: Path) -> str:
    # The schema ships inside check-jsonschema's wheel: nothing is downloaded.
    done = run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        timeout=120,
    )
    if done.returncode:
        found = [
            line.strip().replace(f"{compose}::", "")
            for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and not line.startswith("Schema validation errors")
        ]
        fail_if([f"{COMPOSE}: {line}" for line in found] or [f"{COMPOSE}: schema check failed"])
    return f"{COMPOSE}: valid against the Compose Specification's schema"


def _documented(env_example: Path) -> dict[str, str]:
    """The variables deploy/.env.example documents, with their example values."""
    if not env_example.exists():
        return {}
    found = {}
    for line in env_example.read_text().splitlines():
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line.strip())
        if match:
            found[match[1]] = match[2]
    return found


def _strings(value: Any) -> list[str]:
    """Every string in a YAML value, keys included (anchors are already merged in)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings(key) + _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _used(value: Any) -> set[str]:
    """The names of the variables a value interpolates."""
    names = set()
    for text in _strings(value):
        for match in VARIABLE.finditer(text):
            if match[0] != "$$":
                names.add(match[1] or match[4])
    return names


def _variables(model: dict[str, Any], documented: dict[str, str]) -> list[str]:
    # A secret can be made from a variable, named bare (`environment: NAME`).
    used = _used(model) | {
        str(secret["environment"])
        for secret in (model.get("secrets") or {}).values()
        if isinstance(secret, dict) and secret.get("environment")
    }
    problems = [
        f"${{{name}}} is used in {COMPOSE} but not documented in {ENV_EXAMPLE}"
        for name in sorted(used - set(documented))
    ]
    problems += [
        f"{name} is documented in {ENV_EXAMPLE} but {COMPOSE} does not use it"
        for name in sorted(set(documented) - used)
    ]
    return problems


def _resolve(text: str, documented: dict[str, str]) -> str:
    """A value as Compose would make it from deploy/.env.example's values and the defaults."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, operator, argument = match[1] or match[4], match[2] or "", match[3] or ""
        value = documented.get(name)
        if operator == ":-":
            return value or argument
        if operator == "-":
            return argument if value is None else value
        if operator in (":+", "+"):
            return argument if value else ""
        return value or ""

    return VARIABLE.sub(one, text)


def _profiles_of(service: dict[str, Any]) -> list[str | None]:
    return list(service.get("profiles") or [None])


def _profiles(services: dict[str, dict[str, Any]]) -> list[str]:
    found: dict[str | None, set[str]] = {}
    for name, service in services.items():
        for profile in _profiles_of(service):
            found.setdefault(profile, set()).add(name)
    problems = []
    for profile in sorted(set(PROFILES) | set(found), key=str):
        label = f"profile {profile}" if profile else "no profile (phase 0)"
        want, have = PROFILES.get(profile, set()), found.get(profile, set())
        if want - have:
            problems.append(f"{label} lacks {', '.join(sorted(want - have))}")
        if have - want:
            problems.append(f"{label} should not have {', '.join(sorted(have - want))}")
    return problems


def _profile_summary(services: dict[str, dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for service in services.values():
        for profile in _profiles_of(service):
            counts[profile or "default"] = counts.get(profile or "default", 0) + 1
    return ", ".join(f"{name} ({count})" for name, count in sorted(counts.items()))


def _one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")) == "no"


def _has_healthcheck(service: dict[str, Any]) -> bool:
    health = service.get("healthcheck") or {}
    return bool(health.get("test")) and not health.get("disable")


def _healthchecks(services: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"service {name} has no healthcheck (every long-running service needs one)"
        for name, service in services.items()
        if not _one_shot(service) and not _has_healthcheck(service)
    ]


def _dependencies(services: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):  # the short form has no condition at all
            depends = {each: {} for each in depends}
        for other, how in depends.items():
            condition = (how or {}).get("condition")
            if other not in services:
                problems.append(f"service {name} depends on {other}, which is not a service")
                continue
            if condition not in CONDITIONS:
                problems.append(
                    f"service {name}: depends_on {other} has no condition "
                    f"(one of {', '.join(sorted(CONDITIONS))})"
                )
            elif condition == "service_healthy" and not _has_healthcheck(services[other]):
                problems.append(
                    f"service {name} waits for {other} to be healthy, but {other} has no "
                    "healthcheck"
                )
            mine, theirs = set(_profiles_of(service)), set(_profiles_of(services[other]))
            if None not in theirs and not mine <= theirs:
                problems.append(
                    f"service {name} depends on {other}, which is not in the same profiles"
                )
    return problems


def _is_ffe_process(service: dict[str, Any]) -> bool:
    image = str(service.get("image", ""))
    return any(f"${{{variable}" in image for variable in FFE_IMAGE_VARIABLES)


def _migrations_first(services: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, service in services.items():
        if name == MIGRATE or "full" not in _profiles_of(service):
            continue
        if not _is_ffe_process(service):
            continue
        depends = service.get("depends_on")
        how = depends if isinstance(depends, dict) else {}
        if (how.get(MIGRATE) or {}).get("condition") != "service_completed_successfully":
            problems.append(
                f"service {name} must wait for {MIGRATE} "
                "(depends_on: {migrate: {condition: service_completed_successfully}})"
            )
    return problems


def _bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                sources.append(source)
        elif isinstance(volume, dict) and volume.get("type") == "bind":
            sources.append(str(volume.get("source", "")))
    return sources


def _mounts(root: Path, services: dict[str, dict[str, Any]]) -> list[str]:
    # Relative paths are the compose file's folder's; absolute ones are the host's own (/ for
    # node-exporter) and are not in the checkout.
    problems = []
    for name, service in services.items():
        for source in _bind_sources(service):
            if source.startswith("/"):
                continue
            path = (root / COMPOSE.parent / source).resolve()
            if not path.exists():
                problems.append(f"service {name} mounts {source}, which does not exist")
    return problems


def _images(services: dict[str, dict[str, Any]], documented: dict[str, str]) -> list[str]:
    problems = []
    for name, service in services.items():
        if "image" not in service:
            problems.append(f"service {name} has no image")
            continue
        image = _resolve(str(service["image"]), documented)
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest":
            problems.append(
                f"service {name}: image {image} is not pinned (give it a version tag, not latest)"
            )
    return problems


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _secrets(services: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and value:
                match = WHOLE_VARIABLE.fullmatch(value)
                default = re.match(r"\$\{\w+:?-(.*)\}$", value)
                if match is None or (default is not None and default[1]):
                    problems.append(
                        f"service {name}: {key} must come from a variable with no default "
                        "(${NAME:?message}), not a value written here"
                    )
            for password in URL_PASSWORD.findall(value):
                if not WHOLE_VARIABLE.fullmatch(password):
                    problems.append(
                        f"service {name}: {key} has a password written into its URL; use "
                        "${NAME} there"
                    )
    return problems


def _secret_references(model: dict[str, Any], services: dict[str, dict[str, Any]]) -> list[str]:
    declared = set(model.get("secrets") or {})
    problems = []
    for name, service in services.items():
        for secret in service.get("secrets") or []:
            source = secret.get("source") if isinstance(secret, dict) else secret
            if source not in declared:
                problems.append(f"service {name} uses secret {source}, which is not declared")
    return problems


def _scalable(services: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name in sorted(SCALABLE & set(services)):
        service = services[name]
        if "container_name" in service:
            problems.append(f"service {name} is scaled, so it cannot have a container_name")
        for port in service.get("ports") or []:
            # "HOST:CONTAINER" or {published: HOST}; a bare "CONTAINER" gets a random one.
            fixed = port.get("published") if isinstance(port, dict) else ":" in str(port)
            if fixed:
                problems.append(
                    f"service {name} is scaled, so it cannot publish a fixed host port ({port})"
                )
    return problems


def _command(service: dict[str, Any], documented: dict[str, str]) -> list[str]:
    """A service's command as a list, its variables filled in as .env.example's would be."""
    command = service.get("command") or []
    words = command.split() if isinstance(command, str) else [str(word) for word in command]
    return [_resolve(word, documented) for word in words]


def _option(words: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in a command, else None."""
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None


def _listens(
    service: dict[str, Any], documented: dict[str, str]
) -> tuple[str, str, str, str] | None:
    """Where an ffe process serves /metrics: (port, host, how the port was set, how the host
    was), or None for a service that serves none (a one-shot, `ffe db upgrade`)."""
    words = _command(service, documented)
    env = {key: _resolve(value, documented) for key, value in _environment(service).items()}
    if words[:1] in (["serve"], ["run"]):
        port = _option(words, "--port") or env.get("FFE__API__PORT")
        host = _option(words, "--host") or env.get("FFE__API__HOST") or "0.0.0.0"
        return port or str(API_PORT), host, "--port" if port else "ffe serve's default", "--host"
    section = HEALTH_SECTIONS.get(words[0]) if words else None
    if section is None:
        return None
    port_env, host_env = f"FFE__{section}__HEALTH_PORT", f"FFE__{section}__HEALTH_HOST"
    port = _option(words, "--health-port")
    host = _option(words, "--health-host")
    return (
        port or env.get(port_env, "0"),
        host or env.get(host_env, "127.0.0.1"),
        "--health-port" if port else port_env,
        "--health-host" if host else host_env,
    )


def _scrape_targets(
    root: Path, services: dict[str, dict[str, Any]], documented: dict[str, str]
) -> tuple[str, list[str]]:
    """Every target Prometheus scrapes (dns_sd names and port, static host:port) must be a
    compose service listening there on every address, and an ffe process's FFE_HEALTH_URL (its
    own health check) must probe that same port: a port changed on one side only would leave
    the container healthy and its metrics unscraped. Every ffe process that serves /metrics
    must be scraped too."""
    path = root / PROMETHEUS
    if not path.exists():
        return "", []
    targets = _targets(load(path) or {})
    problems = []
    for job, name, port in targets:
        problems += _check_target(job, name, port, services, documented)
    scraped = {name for _, name, _ in targets}
    for name, service in services.items():
        if name in scraped or "full" not in _profiles_of(service):
            continue
        listens = _listens(service, documented) if _is_ffe_process(service) else None
        if listens and listens[0] != "0" and not _one_shot(service):
            problems.append(
                f"service {name} serves /metrics on {listens[0]}, but no job of "
                f"{PROMETHEUS} scrapes it"
            )
    summary = ", ".join(f"{job} {name}:{port}" for job, name, port in targets)
    return summary, problems


def _targets(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(job, compose service, port) of every scrape target but Prometheus itself."""
    targets: list[tuple[str, str, str]] = []
    for job in config.get("scrape_configs") or []:
        name = str(job.get("job_name"))
        for dns in job.get("dns_sd_configs") or []:
            targets += [(name, str(each), str(dns.get("port"))) for each in dns.get("names") or []]
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, _, port = str(target).rpartition(":")
                if host not in ("localhost", "127.0.0.1"):
                    targets.append((name, host, port))
    return targets


def _check_target(
    job: str,
    name: str,
    port: str,
    services: dict[str, dict[str, Any]],
    documented: dict[str, str],
) -> list[str]:
    where = f"{PROMETHEUS}: job {job} scrapes {name}:{port}"
    service = services.get(name)
    if service is None:
        return [f"{where}, but {COMPOSE} has no service {name}"]
    listens = _listens(service, documented) if _is_ffe_process(service) else None
    if listens is None:
        # Not ours: the port its own health check probes is the one it serves.
        probe = " ".join(_strings((service.get("healthcheck") or {}).get("test")))
        if f":{port}/" in probe:
            return []
        return [f"{where}, but service {name}'s healthcheck probes another port ({probe})"]
    problems = []
    listen_port, host, port_how, host_how = listens
    if listen_port != port:
        problems.append(
            f"{where}, but service {name} listens on {listen_port} ({port_how}): change one "
            "to match the other"
        )
    if host not in ("0.0.0.0", "::"):
        problems.append(
            f"{where}, but service {name} listens on {host} only ({host_how}): give it "
            "0.0.0.0 so Prometheus reaches it"
        )
    url = _resolve(_environment(service).get("FFE_HEALTH_URL", ""), documented)
    match = re.match(r"^https?://[^/:]+:(\d+)/", url)
    if match is None or match[1] != listen_port:
        problems.append(
            f"service {name}: FFE_HEALTH_URL {url or '(unset)'} does not probe the port it "
            f"listens on and Prometheus (job {job}) scrapes, {listen_port}"
        )
    return problems


def _nginx(root: Path) -> str:
    conf = root / NGINX_CONF
    fail_if([] if conf.exists() else [f"{NGINX_CONF} is missing"])
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    fail_if(
        []
        if nginx
        else ["nginx is not installed (Debian: apt-get install nginx); it checks nginx.conf"]
    )
    # A copy whose /tmp paths (pid, temporary files) are a folder of its own, so the test
    # writes nothing outside it. The upstream is named in a variable (resolved per request),
    # so `nginx -t` needs no DNS for it; only the syntax and the directives are checked.
    with tempfile.TemporaryDirectory(prefix="ffe-nginx-") as folder:
        copy = Path(folder) / "nginx.conf"
        copy.write_text(conf.read_text().replace("/tmp/", f"{folder}/"))
        done = run([str(nginx), "-t", "-q", "-e", "stderr", "-p", folder, "-c", str(copy)])
    if done.returncode:
        lines = [
            line.replace(str(copy), str(NGINX_CONF))
            for line in done.stderr.splitlines()
            if line.strip()
        ]
        fail_if([f"nginx -t: {line}" for line in lines] or ["nginx -t failed"])
    return f"{NGINX_CONF}: nginx -t passes"
