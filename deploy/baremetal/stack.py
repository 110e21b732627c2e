"""The bare-metal stack: compose's `full` topology as processes on one host's loopback, under
supervisord, for trying ffe for real without a container engine (docs/deploy.md, "Bare metal:
one host with supervisord or systemd").

Command line (with the project's Python, which has supervisor, psycopg and redis)::

    .venv/bin/python deploy/baremetal/stack.py up [--dir .stack] [--port-base N]
                                                  [--api-processes 3] [--agent-speed 1]
                                                  [--agent-param window=120 ...]
                                                  [--backup-interval 3600] [--backup-keep 24]
    .venv/bin/python deploy/baremetal/stack.py status [--dir .stack] [--json]
    .venv/bin/python deploy/baremetal/stack.py down   [--dir .stack] [--purge]
    .venv/bin/python deploy/baremetal/stack.py render [--dir ...]   # the configs only, no process
    .venv/bin/python deploy/baremetal/stack.py verify-units         # systemd-analyze verify

What runs (names as supervisord and Stack know them): ``postgres`` (a private cluster made
with initdb in DIR/postgres, WAL archived into DIR/wal-archive), ``pgbouncer`` (transaction
pooling), ``redis``, ``api-0`` .. ``api-{N-1}`` (``ffe serve``, one process and one loopback
port each), ``worker-0``, ``worker-1`` (``ffe worker``), ``precompute``, ``agent`` (``ffe agent
run``: the ensemble strategy replaying the bundled SP500 at ``agent_speed`` bars a second),
``nginx`` (TLS on the load balancer's port, to the API processes), ``prometheus`` (every
process scraped, every rule file of deploy/monitoring/rules loaded), ``alertmanager``
(deploy/monitoring/alertmanager.yml's routes, sent to ``webhook``) and ``webhook``
(deploy/baremetal/webhook.py, which appends each notification to DIR/alerts.jsonl),
``backup`` (deploy/baremetal/scheduler.py running ``ffe backup --dir DIR/backups --keep K``
every ``backup_interval`` seconds: supervisord has no timers); ``node-exporter`` too when
Debian's prometheus-node-exporter is installed. Disaster recovery drills (restore, PITR,
failover to a standby): deploy/baremetal/dr.py.

Ports: with ``port_base`` B, everything is at B + an offset (see ``Ports.from_base``: the load
balancer B, Prometheus B+1, Alertmanager B+2, webhook B+3, PostgreSQL B+4, PgBouncer B+5, Redis
B+6, node-exporter B+7, precompute B+8, agent B+9, workers B+10.., API processes B+20..);
without one, the documented defaults (``Ports.defaults``: load balancer 8080, Prometheus 9090,
Alertmanager 9093, PostgreSQL 5433, PgBouncer 6432, Redis 6380, ...). Never 5432 or 6379: the
machine's own PostgreSQL and Redis are not ours.

Python API, for tests and benches (``tests/support/stack.py`` puts this folder on sys.path)::

    from stack import Stack, StackError
    stack = Stack(tmp_dir, port_base=48000, api_processes=3)  # nothing starts yet
    # keyword-only: agent_speed=1.0 (bars a second), agent_params={"window": "120"} (the
    # ensemble's; its own defaults otherwise), tls_cert=/tls_key= (default: self-signed),
    # rules_for_override="5s" (tests: see below)
    # backup_interval=3600.0 (seconds), backup_keep=24 (the backup program's schedule)
    stack.up(timeout=240)        # returns once every process is healthy and every Prometheus
                                 # target up; StackError names what is not, with its last logs
    stack.urls.lb                # https://127.0.0.1:48000 ; also .prometheus, .alertmanager,
                                 # .webhook, .api (one URL each), .workers, .precompute, .agent,
                                 # .postgres (direct, user ffe), .postgres_admin (superuser),
                                 # .pgbouncer, .redis, .node_exporter (or None)
    stack.ca_file                # the certificate nginx serves (self-signed: its own CA)
    stack.ssl_context()          # an SSLContext trusting it
    stack.api_key                # a read-scope key (Prometheus's); stack.admin_key: read,
                                 # trade and admin (submit jobs, manage the agent)
    stack.admin_user, stack.admin_password   # the dashboard's admin login
    stack.request("GET", "/health/ready", key=None, body=None) -> (status, headers, bytes)
    stack.processes()            # every supervisord process name
    stack.kill("api-1", signal.SIGKILL)   # via supervisord; autorestart brings it back
    stack.stop("worker-0"); stack.start("worker-0", wait=True)
    stack.pid("agent"); stack.wait_healthy(["api-1"], timeout=60)
    stack.status() -> StackStatus(processes=[ProcessStatus], targets=[Target])
    stack.targets()              # Prometheus's active targets
    stack.prometheus_query("up") # the result list of /api/v1/query
    stack.alerts()               # every notification the webhook received (dicts)
    stack.log_tail("api-0", 20)  # a process's last log lines
    stack.our_pids()             # every live process of this stack (marked by FFE_STACK_DIR)
    stack.rss_bytes()            # their resident memory, summed
    stack.down(purge=False)      # supervisord shutdown, then SIGKILL whatever is left

``rules_for_override`` (tests only): Prometheus loads copies of the rule files in which every
alert's ``for:`` is that duration and no group keeps its own ``interval:`` (all run every
evaluation_interval, 5 s), and Alertmanager groups for 1 s instead of 10-30 s, so a forced
condition reaches the webhook in seconds, not minutes. The thresholds, expressions and routes
stay the repository's.

Every process the stack starts carries FFE_STACK_DIR=<its folder> in its environment, so
``down`` finds and ends all of them (children too: job processes, nginx workers, PostgreSQL
backends) even when supervisord itself was killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEMPLATES = HERE / "templates"
SYSTEMD = HERE / "systemd"
RULES = REPO / "deploy" / "monitoring" / "rules"
ALERTMANAGER_YML = REPO / "deploy" / "monitoring" / "alertmanager.yml"
# The placeholder receiver of deploy/monitoring/alertmanager.yml, pointed at our webhook.
ALERT_WEBHOOK = "http://alert-webhook:9000/"

HOST = "127.0.0.1"
MARKER = "FFE_STACK_DIR"  # in every process's environment: how `down` finds what is ours
POSTGRES_USER = "postgres"  # the OS user PostgreSQL and PgBouncer run as (both refuse root)
WORKERS = 2
SCRAPE_INTERVAL_S = 5  # quicker than compose's 15 s: a killed process shows within seconds
FORBIDDEN_PORTS = {5432, 6379}  # the machine's own PostgreSQL and Redis
BACKUP_INTERVAL_S = 3600.0  # the `backup` program's default schedule (ffe-backup.timer's)
BACKUP_KEEP = 24  # ... and the backups it keeps: a day of hourly dumps


class StackError(RuntimeError):
    """Something of the stack is missing, did not start or is not healthy; the message names
    it (and carries the last log lines of what failed)."""


# --- ports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    """Every port of the stack, all on 127.0.0.1."""

    lb: int
    prometheus: int
    alertmanager: int
    webhook: int
    postgres: int
    pgbouncer: int
    redis: int
    node_exporter: int
    precompute: int
    agent: int
    workers: tuple[int, ...]
    api: tuple[int, ...]

    @classmethod
    def from_base(cls, base: int, api_processes: int, workers: int = WORKERS) -> Ports:
        """B+0 load balancer, +1 Prometheus, +2 Alertmanager, +3 webhook, +4 PostgreSQL,
        +5 PgBouncer, +6 Redis, +7 node-exporter, +8 precompute, +9 agent, +10.. workers (10
        at most), +20.. API processes."""
        if not 1 <= api_processes <= 80 or not 1 <= workers <= 10:
            raise StackError("api_processes must be 1..80 and workers 1..10")
        if not 1024 <= base <= 65535 - 20 - api_processes:
            raise StackError(f"port base {base} leaves no room for {api_processes} API ports")
        return cls(
            lb=base,
            prometheus=base + 1,
            alertmanager=base + 2,
            webhook=base + 3,
            postgres=base + 4,
            pgbouncer=base + 5,
            redis=base + 6,
            node_exporter=base + 7,
            precompute=base + 8,
            agent=base + 9,
            workers=tuple(base + 10 + i for i in range(workers)),
            api=tuple(base + 20 + i for i in range(api_processes)),
        )

    @classmethod
    def defaults(cls, api_processes: int, workers: int = WORKERS) -> Ports:
        """The documented defaults: load balancer 8080, Prometheus 9090, Alertmanager 9093,
        webhook 9095, node-exporter 9100, PostgreSQL 5433, PgBouncer 6432, Redis 6380, API
        processes 8100.., workers 8200.., precompute 8300, agent 8301."""
        if not 1 <= api_processes <= 80 or not 1 <= workers <= 10:
            raise StackError("api_processes must be 1..80 and workers 1..10")
        return cls(
            lb=8080,
            prometheus=9090,
            alertmanager=9093,
            webhook=9095,
            postgres=5433,
            pgbouncer=6432,
            redis=6380,
            node_exporter=9100,
            precompute=8300,
            agent=8301,
            workers=tuple(8200 + i for i in range(workers)),
            api=tuple(8100 + i for i in range(api_processes)),
        )

    def all(self) -> list[int]:
        scalars = [v for v in asdict(self).values() if isinstance(v, int)]
        return scalars + list(self.workers) + list(self.api)


@dataclass(frozen=True)
class Urls:
    """Where each part of the stack answers."""

    lb: str
    prometheus: str
    alertmanager: str
    webhook: str
    api: tuple[str, ...]
    workers: tuple[str, ...]
    precompute: str
    agent: str
    postgres: str
    postgres_admin: str
    pgbouncer: str
    redis: str
    node_exporter: str | None


@dataclass
class ProcessStatus:
    name: str
    state: str
    pid: int
    uptime_s: float
    healthy: bool
    health: str


@dataclass
class Target:
    job: str
    instance: str
    process: str
    health: str
    last_error: str


@dataclass
class StackStatus:
    processes: list[ProcessStatus] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            bool(self.processes)
            and all(p.state == "RUNNING" and p.healthy for p in self.processes)
            and bool(self.targets)
            and all(t.health == "up" for t in self.targets)
        )

    def table(self) -> str:
        """The human-readable form `stack.py status` prints."""
        lines = [f"{'process':<14} {'state':<9} {'pid':>8} {'uptime':>9}  health"]
        for p in self.processes:
            pid = str(p.pid) if p.pid else "-"
            uptime = f"{p.uptime_s:.0f}s" if p.state == "RUNNING" else "-"
            mark = "ok" if p.healthy else "NOT READY"
            lines.append(f"{p.name:<14} {p.state:<9} {pid:>8} {uptime:>9}  {mark} {p.health}")
        lines.append("")
        lines.append(f"{'prometheus job':<16} {'instance':<22} {'process':<14} health")
        for t in self.targets:
            error = f"  ({t.last_error})" if t.last_error else ""
            lines.append(f"{t.job:<16} {t.instance:<22} {t.process:<14} {t.health}{error}")
        return "\n".join(lines)


# --- binaries ------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def binaries() -> tuple[dict[str, str], list[str]]:
    """The external programs the stack runs ({name: path}) and the names of the missing ones
    (with the Debian package that has each)."""
    wanted = {
        "nginx": "nginx",
        "pgbouncer": "pgbouncer",
        "redis-server": "redis-server",
        "prometheus": "prometheus",
        "prometheus-alertmanager": "prometheus-alertmanager",
        "openssl": "openssl",
        "runuser": "util-linux",
    }
    found: dict[str, str] = {}
    missing: list[str] = []
    for name, package in wanted.items():
        path = _which(name)
        if path:
            found[name] = path
        else:
            missing.append(f"{name} (Debian package {package})")
    pg = _postgres_bin()
    if pg is None:
        missing.append("PostgreSQL server binaries (Debian package postgresql)")
    else:
        for name in ("postgres", "initdb", "pg_ctl"):
            found[name] = str(pg / name)
    exporter = _which("prometheus-node-exporter")
    if exporter:
        found["node-exporter"] = exporter  # optional: the System dashboard's node_* metrics
    return found, missing


# --- templates -----------------------------------------------------------------------------


def render(template: str, **values: object) -> str:
    """``{{name}}`` fields of ``template`` (a file in templates/) filled from ``values``; a
    field with no value is an error, never left in a config."""
    text = (TEMPLATES / template).read_text()

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise StackError(f"templates/{template}: no value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", fill, text)


def _supervisor_env(env: dict[str, str]) -> str:
    """supervisord's environment= syntax: KEY='value' pairs; % doubled (its interpolation)."""
    parts = []
    for key, value in env.items():
        if "'" in value or "\n" in value:
            raise StackError(f"environment value of {key} has a quote or newline")
        parts.append(f"{key}='{value.replace('%', '%%')}'")
    return ",".join(parts)


def _write(path: Path, text: str, mode: int = 0o644, owner: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    if owner:
        shutil.chown(tmp, owner, owner)
    tmp.replace(path)


# --- the stack -----------------------------------------------------------------------------


class Stack:
    """One bare-metal stack in folder ``dir`` (see the module's docstring)."""

    def __init__(
        self,
        dir: str | os.PathLike[str],
        port_base: int | None = None,
        api_processes: int | None = None,
        *,
        agent_speed: float | None = None,
        agent_params: dict[str, str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        rules_for_override: str | None = None,
        backup_interval: float | None = None,
        backup_keep: int | None = None,
    ) -> None:
        self.dir = Path(dir).resolve()
        saved = self._load_state().get("settings", {})
        # `status` and `down` without options act on the stack as `up` made it.
        if port_base is None and api_processes is None and saved:
            port_base, api_processes = saved.get("port_base"), saved.get("api_processes")
        self.api_processes = api_processes or 3
        self.port_base = port_base
        self.agent_speed = agent_speed if agent_speed is not None else saved.get("agent_speed", 1.0)
        # The ensemble's parameters (docs/forecasting.md); none: its defaults, so it decides
        # from bar `window` (500) on, about 8 minutes in at one bar a second.
        self.agent_params = dict(
            agent_params if agent_params is not None else saved.get("agent_params", {})
        )
        # The `backup` program: `ffe backup --keep backup_keep` every backup_interval seconds.
        self.backup_interval = float(
            backup_interval or saved.get("backup_interval") or BACKUP_INTERVAL_S
        )
        self.backup_keep = int(backup_keep or saved.get("backup_keep") or BACKUP_KEEP)
        if self.backup_interval < 5 or self.backup_keep < 1:
            raise StackError("backup_interval must be at least 5 s and backup_keep at least 1")
        self.ports = (
            Ports.from_base(port_base, self.api_processes)
            if port_base is not None
            else Ports.defaults(self.api_processes)
        )
        # After a failover (deploy/baremetal/dr.py) the promoted standby is the database every
        # process reaches: its port replaces the original cluster's.
        moved = self._load_state().get("postgres_port")
        if moved:
            self.ports = replace(self.ports, postgres=int(moved))
        clash = FORBIDDEN_PORTS.intersection(self.ports.all())
        if clash:
            raise StackError(f"port {sorted(clash)} is the machine's PostgreSQL or Redis")
        cert = tls_cert or saved.get("tls_cert")
        key = tls_key or saved.get("tls_key")
        if (cert is None) != (key is None):
            raise StackError("give both tls_cert and tls_key, or neither (a self-signed pair)")
        self.tls_cert = Path(cert).resolve() if cert else self.dir / "tls" / "cert.pem"
        self.tls_key = Path(key).resolve() if key else self.dir / "tls" / "key.pem"
        self.own_cert = cert is None
        self.rules_for_override = rules_for_override or saved.get("rules_for_override")
        if self.rules_for_override and not re.fullmatch(r"\d+[smh]", self.rules_for_override):
            raise StackError(f"rules_for_override {self.rules_for_override!r}: use e.g. 5s")
        self.bin, self.missing = binaries()
        self.python = sys.executable

    # --- paths and secrets ---

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    @property
    def ca_file(self) -> Path:
        """The certificate clients should trust: nginx's own, when self-signed."""
        return self.tls_cert

    def _load_state(self) -> dict[str, Any]:
        state = self.dir / "state.json"
        return json.loads(state.read_text()) if state.exists() else {}

    def _save_state(self, **updates: Any) -> None:
        state = self._load_state()
        state.update(updates)
        _write(self.path("state.json"), json.dumps(state, indent=2) + "\n")

    def _secrets(self) -> dict[str, str]:
        file = self.path("secrets", "stack.json")
        if not file.exists():
            raise StackError(f"no stack in {self.dir} yet: run `up` (or `render`) first")
        return dict(json.loads(file.read_text()))

    def _make_secrets(self) -> dict[str, str]:
        file = self.path("secrets", "stack.json")
        if file.exists():
            return self._secrets()
        made = {
            "postgres_superuser_password": secrets.token_hex(16),
            "postgres_password": secrets.token_hex(16),
            "redis_password": secrets.token_hex(16),
            "secret_key": secrets.token_hex(32),
            "admin_password": secrets.token_hex(12),
        }
        self.path("secrets").mkdir(parents=True, exist_ok=True)
        self.path("secrets").chmod(0o700)
        _write(file, json.dumps(made, indent=2) + "\n", 0o600)
        return made

    def _secret(self, name: str) -> str:
        value = self._secrets().get(name)
        if not value:
            raise StackError(f"{name} is not made yet: run `up` first")
        return value

    @property
    def api_key(self) -> str:
        """A read-scope API key (the one Prometheus scrapes the API processes with)."""
        return self._secret("read_key")

    @property
    def admin_key(self) -> str:
        """An API key with the read, trade and admin scopes."""
        return self._secret("admin_key")

    admin_user = "admin"

    @property
    def admin_password(self) -> str:
        return self._secret("admin_password")

    @property
    def urls(self) -> Urls:
        p, s = self.ports, self._secrets()
        pg_pw, redis_pw = s["postgres_password"], s["redis_password"]
        return Urls(
            lb=f"https://{HOST}:{p.lb}",
            prometheus=f"http://{HOST}:{p.prometheus}",
            alertmanager=f"http://{HOST}:{p.alertmanager}",
            webhook=f"http://{HOST}:{p.webhook}",
            api=tuple(f"http://{HOST}:{port}" for port in p.api),
            workers=tuple(f"http://{HOST}:{port}" for port in p.workers),
            precompute=f"http://{HOST}:{p.precompute}",
            agent=f"http://{HOST}:{p.agent}",
            postgres=f"postgresql://ffe:{pg_pw}@{HOST}:{p.postgres}/ffe",
            postgres_admin=(
                f"postgresql://postgres:{s['postgres_superuser_password']}"
                f"@{HOST}:{p.postgres}/postgres"
            ),
            pgbouncer=f"postgresql://ffe:{pg_pw}@{HOST}:{p.pgbouncer}/ffe",
            redis=f"redis://:{redis_pw}@{HOST}:{p.redis}/0",
            node_exporter=f"http://{HOST}:{p.node_exporter}" if self._has_node_exporter else None,
        )

    @property
    def _has_node_exporter(self) -> bool:
        return "node-exporter" in self.bin

    def ffe_env(self) -> dict[str, str]:
        """The settings every ffe process of the stack runs with (compose's x-ffe-env, on
        loopback)."""
        u, s = self.urls, self._secrets()
        direct = u.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
        return {
            "FFE__API__ENVIRONMENT": "production",
            "FFE__API__SECRET_KEY": s["secret_key"],
            "FFE__API__TRUSTED_PROXIES": f'["{HOST}"]',  # nginx, on the same host
            "FFE__LOGGING__LEVEL": "INFO",
            "FFE__DATA__DIR": str(self.path("data")),
            "FFE__DATABASE__URL": u.pgbouncer,
            "FFE__DATABASE__PGBOUNCER": "true",
            "FFE__DATABASE__LISTEN_URL": u.postgres,
            "FFE__DATABASE__AUTO_UPGRADE": "never",
            "FFE__TUNE__STORAGE_URL": f"{direct}?options=-csearch_path%3Dffe_tune",
            "FFE__REDIS__URL": u.redis,
        }

    # --- the programs ---

    def _ffe(self, *args: str) -> str:
        return " ".join([self.python, "-m", "ffe", *args])

    def programs(self) -> list[dict[str, Any]]:
        """Every supervisord program: name, command, user, priority, health check."""
        p, b = self.ports, self.bin
        d = str(self.dir)
        ffe_env = self.ffe_env()
        progs: list[dict[str, Any]] = [
            {
                "name": "postgres",
                "command": f"{b['postgres']} -D {self.path('postgres', 'data')}",
                "user": POSTGRES_USER,
                "priority": 10,
                "stopsignal": "INT",  # fast shutdown: roll back and stop, no waiting for clients
                "stopwaitsecs": 60,
                "env": {},
            },
            {
                "name": "redis",
                "command": f"{b['redis-server']} {self.path('redis.conf')}",
                "priority": 10,
                "env": {},
            },
            {
                "name": "pgbouncer",
                "command": f"{b['pgbouncer']} {self.path('pgbouncer', 'pgbouncer.ini')}",
                "user": POSTGRES_USER,
                "priority": 20,
                "env": {},
            },
        ]
        for i, port in enumerate(p.api):
            progs.append(
                {
                    "name": f"api-{i}",
                    "command": self._ffe("serve", "--host", HOST, "--port", str(port)),
                    "priority": 30,
                    "startsecs": 5,
                    "env": {**ffe_env, "FFE__API__WORKERS": "1"},
                }
            )
        for i, port in enumerate(p.workers):
            progs.append(
                {
                    "name": f"worker-{i}",
                    "command": self._ffe("worker", "--health-port", str(port)),
                    "priority": 30,
                    "startsecs": 5,
                    "stopwaitsecs": 40,  # jobs.drain_s (20 s) to hand jobs back, then some
                    "env": {**ffe_env, "FFE__JOBS__HEALTH_HOST": HOST},
                }
            )
        progs.append(
            {
                "name": "precompute",
                "command": self._ffe(
                    "precompute", "--health-port", str(p.precompute), "--health-host", HOST
                ),
                "priority": 30,
                "startsecs": 5,
                "env": ffe_env,
            }
        )
        progs.append(
            {
                "name": "agent",
                # The ensemble strategy (docs/forecasting.md) replaying the bundled S&P 500 at
                # agent_speed bars a second: slow enough to run for hours, so there is always a
                # live agent to watch, kill and resume (a run resumes where it stopped).
                "command": self._ffe(
                    "agent",
                    "run",
                    "--strategy",
                    "ensemble",
                    "--symbol",
                    "SP500",
                    "--account",
                    "paper",
                    "--speed",
                    str(self.agent_speed),
                    "--health-port",
                    str(p.agent),
                    "--health-host",
                    HOST,
                    # An operator's stop survives supervisord restarting the process: it
                    # waits for `ffe agent resume` instead of trading again (docs/agent.md).
                    "--on-stop",
                    "wait",
                    *(f"--param {k}={v}" for k, v in self.agent_params.items()),
                ),
                "priority": 40,
                "startsecs": 5,
                "env": ffe_env,
            }
        )
        progs += [
            {
                "name": "nginx",
                "command": f"{b['nginx']} -e stderr -p {self.path('nginx')}/ "
                f"-c {self.path('nginx', 'nginx.conf')}",
                "priority": 50,
                "stopsignal": "QUIT",  # graceful: finish the requests in flight
                "env": {},
            },
            {
                "name": "webhook",
                "command": f"{self.python} {HERE / 'webhook.py'} --host {HOST} "
                f"--port {p.webhook} --out {self.path('alerts.jsonl')}",
                "priority": 50,
                "env": {},
            },
            {
                "name": "alertmanager",
                "command": f"{b['prometheus-alertmanager']} "
                f"--config.file={self.path('alertmanager', 'alertmanager.yml')} "
                f"--storage.path={self.path('alertmanager', 'data')} "
                f"--web.listen-address={HOST}:{p.alertmanager} "
                f"--cluster.listen-address=",  # one Alertmanager: no gossip port
                "priority": 50,
                "env": {},
            },
            {
                "name": "prometheus",
                "command": f"{b['prometheus']} "
                f"--config.file={self.path('prometheus', 'prometheus.yml')} "
                f"--storage.tsdb.path={self.path('prometheus', 'data')} "
                f"--storage.tsdb.retention.time=2d "
                f"--web.listen-address={HOST}:{p.prometheus} "
                f"--web.enable-lifecycle",
                "priority": 60,
                "env": {},
            },
        ]
        progs.append(
            {
                "name": "backup",
                # supervisord has no timers: scheduler.py runs `ffe backup` every
                # backup_interval seconds (pg_dump straight to PostgreSQL, not PgBouncer).
                "command": f"{self.python} {HERE / 'scheduler.py'} "
                f"--every {self.backup_interval:g} --retry 15 "
                f"--status {self.path('backups', 'scheduler.json')} -- "
                + self._ffe(
                    "backup", "--dir", str(self.path("backups")), "--keep", str(self.backup_keep)
                ),
                "priority": 70,
                "env": {
                    **ffe_env,
                    "FFE__DATABASE__URL": self.urls.postgres,
                    "FFE__DATABASE__PGBOUNCER": "false",
                },
            }
        )
        if self._has_node_exporter:
            progs.append(
                {
                    "name": "node-exporter",
                    "command": f"{b['node-exporter']} "
                    f"--web.listen-address={HOST}:{p.node_exporter}",
                    "priority": 50,
                    "env": {},
                }
            )
        for prog in progs:
            prog.setdefault("user", "root")
            prog.setdefault("startsecs", 2)
            prog.setdefault("stopsignal", "TERM")
            prog.setdefault("stopwaitsecs", 30)
            prog.setdefault("dir", d)
        return progs

    def processes(self) -> list[str]:
        """Every supervisord process name (the order of ``programs()``; needs no secret)."""
        return [
            "postgres",
            "redis",
            "pgbouncer",
            *(f"api-{i}" for i in range(len(self.ports.api))),
            *(f"worker-{i}" for i in range(len(self.ports.workers))),
            "precompute",
            "agent",
            "nginx",
            "webhook",
            "alertmanager",
            "prometheus",
            "backup",
            *(["node-exporter"] if self._has_node_exporter else []),
        ]

    # --- rendering ---

    def render(self) -> None:
        """Write every config into the stack's folder (nothing starts)."""
        p, s = self.ports, self._make_secrets()
        for sub in (
            "logs",
            "run",
            "data",
            "backups",
            "redis",
            "nginx/tmp",
            "prometheus/data",
            "prometheus/agents.d",
            "alertmanager/data",
        ):
            self.path(sub).mkdir(parents=True, exist_ok=True)
        values = {"host": HOST, "dir": self.dir, "logs": self.path("logs"), "run": self.path("run")}
        servers = "\n".join(
            f"        server {HOST}:{port} max_fails=1 fail_timeout=5s;" for port in p.api
        )
        _write(
            self.path("nginx", "nginx.conf"),
            render(
                "nginx.conf",
                **values,
                nginx_tmp=self.path("nginx", "tmp"),
                api_servers=servers,
                lb_port=p.lb,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
            ),
        )
        _write(
            self.path("redis.conf"),
            render(
                "redis.conf",
                **values,
                redis_port=p.redis,
                redis_dir=self.path("redis"),
                redis_password=s["redis_password"],
            ),
            0o600,
        )
        pgb = self.path("pgbouncer")
        pgb.mkdir(exist_ok=True)
        shutil.chown(pgb, POSTGRES_USER, POSTGRES_USER)
        pgb.chmod(0o700)
        _write(
            pgb / "userlist.txt",
            f'"ffe" "{s["postgres_password"]}"\n',
            0o600,
            owner=POSTGRES_USER,
        )
        _write(
            pgb / "pgbouncer.ini",
            render(
                "pgbouncer.ini",
                **values,
                postgres_port=p.postgres,
                pgbouncer_port=p.pgbouncer,
                pgbouncer_userlist=pgb / "userlist.txt",
            ),
            0o600,
            owner=POSTGRES_USER,
        )
        if self.path("postgres", "data").exists():
            self._write_postgres_conf()
        self._render_prometheus()
        am = ALERTMANAGER_YML.read_text()
        if ALERT_WEBHOOK not in am:
            raise StackError(f"{ALERTMANAGER_YML} no longer names {ALERT_WEBHOOK}")
        am = am.replace(ALERT_WEBHOOK, f"http://{HOST}:{p.webhook}/")
        if self.rules_for_override:
            am = _alertmanager_quickened(am)
        _write(
            self.path("alertmanager", "alertmanager.yml"),
            "# deploy/monitoring/alertmanager.yml with its receivers pointed at webhook.py\n" + am,
        )
        blocks = []
        programs = self.programs()
        if [prog["name"] for prog in programs] != self.processes():
            raise StackError("programs() and processes() disagree")  # a bug of this file
        for prog in programs:
            blocks.append(
                render(
                    "program.conf",
                    **{**values, **{k: v for k, v in prog.items() if k != "env"}},
                    environment=_supervisor_env({MARKER: str(self.dir), **prog["env"]}),
                )
            )
        _write(
            self.path("supervisord.conf"),
            render("supervisord.conf", **values, programs="\n".join(blocks)),
            0o600,  # the environment= lines hold the passwords
        )

    def _write_postgres_conf(
        self, data: Path | None = None, port: int | None = None, archive: Path | None = None
    ) -> None:
        """stack.conf of the cluster in ``data`` (default: the stack's own) on ``port``,
        archiving its WAL into ``archive`` (and reading it back from there in recovery)."""
        _write(
            (data or self.path("postgres", "data")) / "stack.conf",
            render(
                "postgresql.conf",
                host=HOST,
                postgres_port=port or self.ports.postgres,
                wal_archive=archive or self.path("wal-archive"),
            ),
            0o600,
            owner=POSTGRES_USER,
        )

    def _render_prometheus(self) -> None:
        import yaml  # the project's venv has PyYAML

        p = self.ports
        rules = self.path("prometheus", "rules")
        shutil.rmtree(rules, ignore_errors=True)
        rules.mkdir(parents=True)
        for rule_file in sorted(RULES.glob("*.yml")):
            if self.rules_for_override:
                _write(rules / rule_file.name, _rules_quickened(rule_file, self.rules_for_override))
            else:
                shutil.copy(rule_file, rules / rule_file.name)
        key_file = self.path("secrets", "prometheus.key")

        def static(job: str, targets: Iterable[tuple[str, int]], **extra: Any) -> dict[str, Any]:
            return {
                "job_name": job,
                **extra,
                "static_configs": [
                    {"targets": [f"{HOST}:{port}"], "labels": {"process": name}}
                    for name, port in targets
                ],
            }

        scrape = [
            static(
                "ffe-api",
                [(f"api-{i}", port) for i, port in enumerate(p.api)],
                authorization={"type": "Bearer", "credentials_file": str(key_file)},
            ),
            static("ffe-worker", [(f"worker-{i}", port) for i, port in enumerate(p.workers)]),
            static("ffe-precompute", [("precompute", p.precompute)]),
            {
                **static("ffe-agent", [("agent", p.agent)]),
                # One agent an account: another account's agent, started by hand, is scraped
                # once its target file is in agents.d/ (add_agent_target).
                "file_sd_configs": [
                    {"files": [str(self.path("prometheus", "agents.d", "*.json"))]}
                ],
            },
            static("prometheus", [("prometheus", p.prometheus)]),
            static("alertmanager", [("alertmanager", p.alertmanager)]),
        ]
        if self._has_node_exporter:
            scrape.append(static("node-exporter", [("node-exporter", p.node_exporter)]))
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S - 1}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
                "external_labels": {"stack": "ffe-baremetal"},
            },
            "rule_files": ["rules/*.yml"],  # relative to this file: a copy of the repo's
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{p.alertmanager}"]}]}]
            },
            "scrape_configs": scrape,
        }
        header = (
            "# Prometheus of the bare-metal stack, rendered by deploy/baremetal/stack.py: every\n"
            "# process on its loopback port, labelled process=<its supervisord name>.\n"
        )
        _write(
            self.path("prometheus", "prometheus.yml"),
            header + yaml.safe_dump(config, sort_keys=False),
        )
        expected = sum(len(job["static_configs"]) for job in scrape)
        self._save_state(expected_targets=expected)

    # --- bootstrap ---

    def _check_ready_to_run(self) -> None:
        if self.missing:
            raise StackError("missing programs: " + ", ".join(self.missing))
        if os.geteuid() != 0:
            raise StackError("run as root: PostgreSQL and PgBouncer run as the postgres user")
        sock = self.path("run", "supervisor.sock")
        if len(str(sock)) > 100:
            raise StackError(f"{self.dir} is too long a path for a Unix socket; use a shorter one")
        busy = [port for port in self.ports.all() if _port_open(port)]
        if busy:
            raise StackError(f"ports already in use on {HOST}: {busy}")

    def _postgres_can_reach(self) -> None:
        # The cluster lives in DIR/postgres, owned by postgres: every folder above it must let
        # that user through (pytest's and mkdtemp's folders are 0700 root).
        probe = subprocess.run(
            [self.bin["runuser"], "-u", POSTGRES_USER, "--", "test", "-x", str(self.dir)],
            check=False,
        )
        if probe.returncode != 0:
            raise StackError(
                f"the {POSTGRES_USER} user cannot reach {self.dir}: make it and every folder "
                "above it searchable (chmod o+x)"
            )

    def _make_tls(self) -> None:
        if not self.own_cert or self.tls_cert.exists():
            return
        self.tls_cert.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [
                self.bin["openssl"],
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=localhost",
                "-addext",
                f"subjectAltName=DNS:localhost,IP:{HOST}",
                "-keyout",
                str(self.tls_key),
                "-out",
                str(self.tls_cert),
            ],
            "openssl (the self-signed certificate)",
        )
        self.tls_key.chmod(0o600)

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, MARKER: str(self.dir), **(extra or {})}
        return env

    def _bootstrap(self) -> None:
        """Once per folder: the PostgreSQL cluster, the ffe role and database, the schema
        (`ffe db upgrade` straight to PostgreSQL), the admin user and the two API keys."""
        s = self._secrets()
        if s.get("bootstrapped"):
            return
        runuser = [self.bin["runuser"], "-u", POSTGRES_USER, "--"]
        pg = self.path("postgres")
        data = pg / "data"
        archive = self.path("wal-archive")
        for folder in (pg, archive):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.chown(folder, POSTGRES_USER, POSTGRES_USER)
            folder.chmod(0o700)
        if not (data / "PG_VERSION").exists():
            self.initdb(data)
        self._write_postgres_conf()
        _run(
            [
                *runuser,
                self.bin["pg_ctl"],
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(pg / "bootstrap.log"),
                "start",
            ],
            "pg_ctl start (bootstrap)",
            env=self._env(),
        )
        try:
            self._bootstrap_database(s)
        finally:
            _run(
                [
                    *runuser,
                    self.bin["pg_ctl"],
                    "-D",
                    str(data),
                    "-w",
                    "-t",
                    "60",
                    "-m",
                    "fast",
                    "stop",
                ],
                "pg_ctl stop (bootstrap)",
                env=self._env(),
            )

    def initdb(self, data: Path) -> None:
        """A new, empty cluster in ``data`` (owned by postgres), with the stack's superuser
        password and its postgresql.conf including stack.conf (bootstrap; a restore into a
        fresh cluster, deploy/baremetal/dr.py)."""
        runuser = [self.bin["runuser"], "-u", POSTGRES_USER, "--"]
        shutil.rmtree(data, ignore_errors=True)
        pwfile = data.parent / "superuser.pw"
        _write(
            pwfile,
            self._secret("postgres_superuser_password") + "\n",
            0o600,
            owner=POSTGRES_USER,
        )
        try:
            _run(
                [
                    *runuser,
                    self.bin["initdb"],
                    "-D",
                    str(data),
                    "--username=postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                "initdb",
                env=self._env(),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'stack.conf'  # deploy/baremetal/stack.py\n")

    def create_database(self) -> None:
        """The ffe role (the stack's password), its database and the ffe_tune schema, in a
        running cluster that lacks them."""
        import psycopg
        from psycopg import sql

        s = self._secrets()
        with psycopg.connect(self.urls.postgres_admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'ffe'").fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE ffe LOGIN PASSWORD {}").format(
                        sql.Literal(s["postgres_password"])
                    )
                )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ffe'").fetchone():
                conn.execute("CREATE DATABASE ffe OWNER ffe")
        with psycopg.connect(self.urls.postgres, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS ffe_tune")  # Optuna's studies

    def _bootstrap_database(self, s: dict[str, str]) -> None:
        self.create_database()
        # Migrations take session locks and run DDL: straight to PostgreSQL, as compose's
        # migrate service does.
        env = self._env({**self.ffe_env(), "FFE__DATABASE__URL": self.urls.postgres})
        env.pop("FFE__DATABASE__PGBOUNCER")
        ffe = [self.python, "-m", "ffe"]
        _run([*ffe, "db", "upgrade"], "ffe db upgrade", env=env)
        _run(
            [
                *ffe,
                "users",
                "create",
                self.admin_user,
                "--role",
                "admin",
                "--password",
                s["admin_password"],
            ],
            "ffe users create",
            env=env,
        )
        read_key = _run(
            [*ffe, "keys", "create", "prometheus", "--scope", "read"], "ffe keys create", env=env
        ).strip()
        admin_key = _run(
            [
                *ffe,
                "keys",
                "create",
                "stack-admin",
                "--scope",
                "read",
                "--scope",
                "trade",
                "--scope",
                "admin",
            ],
            "ffe keys create",
            env=env,
        ).strip()
        s.update(read_key=read_key, admin_key=admin_key, bootstrapped="yes")
        _write(self.path("secrets", "stack.json"), json.dumps(s, indent=2) + "\n", 0o600)
        _write(self.path("secrets", "prometheus.key"), read_key + "\n", 0o600)

    # --- supervisord ---

    def _rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        sock = self.path("run", "supervisor.sock")
        transport = SupervisorTransport(None, None, f"unix://{sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def supervisord_pid(self) -> int | None:
        """supervisord's pid when it is running, else None."""
        pidfile = self.path("run", "supervisord.pid")
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and self._is_ours(pid) else None

    def _info(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self._rpc().supervisor.getAllProcessInfo()}

    def pid(self, name: str) -> int:
        """The pid supervisord has for ``name`` (0 when it is not running)."""
        return int(self._rpc().supervisor.getProcessInfo(name)["pid"])

    def kill(self, name: str, sig: int | signal.Signals = signal.SIGKILL) -> int:
        """Send ``sig`` to ``name``'s process (through supervisord, as `supervisorctl signal`
        does) and return the pid it went to. autorestart starts it again."""
        pid = self.pid(name)
        self._rpc().supervisor.signalProcess(name, str(int(sig)))
        return pid

    def crash(self, name: str) -> int:
        """SIGKILL ``name`` and keep it down until ``start``: the pid killed. supervisord's
        autorestart spawns it again at once, and stopping that fresh process gently can take
        up to its stopwaitsecs (a PostgreSQL in crash recovery under load took 40 s), which
        would stretch the outage; so every process it spawns meanwhile is SIGKILLed too."""
        killed = self.kill(name, signal.SIGKILL)
        stopping = threading.Thread(target=self.stop, args=(name,), daemon=True)
        stopping.start()
        while stopping.is_alive():
            with contextlib.suppress(OSError, xmlrpc.client.Fault):
                pid = self.pid(name)
                if pid and pid != killed:
                    os.kill(pid, signal.SIGKILL)
            stopping.join(0.05)
        return killed

    def stop(self, name: str) -> None:
        """Stop ``name`` (its stopsignal, then SIGKILL after stopwaitsecs); it stays stopped."""
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING
            self._rpc().supervisor.stopProcess(name, True)

    def start(self, name: str, *, wait: bool = True, timeout: float = 120) -> None:
        """Start ``name`` if it is not running; with ``wait``, until it is healthy."""
        try:
            self._rpc().supervisor.startProcess(name, True)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:
                raise StackError(f"{name} did not start: {fault.faultString}") from None
        self._record_pids()
        if wait:
            self.wait_healthy([name], timeout=timeout)

    def _record_pids(self) -> None:
        with contextlib.suppress(Exception):
            pids = {name: i["pid"] for name, i in self._info().items() if i["pid"]}
            known = self._load_state().get("pids", [])
            self._save_state(pids=sorted(set(known) | set(pids.values())), last_pids=pids)

    # --- health ---

    def health_checks(self) -> dict[str, Callable[[], tuple[bool, str]]]:
        """{process name: a check returning (healthy, what it saw)}."""
        u = self.urls
        checks: dict[str, Callable[[], tuple[bool, str]]] = {
            "postgres": lambda: _sql_ok(u.postgres),
            "pgbouncer": lambda: _sql_ok(u.pgbouncer),
            "redis": lambda: _redis_ok(u.redis),
            "nginx": lambda: _http_ok(f"{u.lb}/nginx-health", self.ssl_context()),
            "webhook": lambda: _http_ok(f"{u.webhook}/health"),
            "alertmanager": lambda: _http_ok(f"{u.alertmanager}/-/ready"),
            "prometheus": lambda: _http_ok(f"{u.prometheus}/-/ready"),
            "precompute": lambda: _http_ok(f"{u.precompute}/health/ready"),
            "agent": lambda: _http_ok(f"{u.agent}/health/ready"),
            "backup": lambda: _scheduler_ok(self.path("backups", "scheduler.json")),
        }
        for i, url in enumerate(u.api):
            checks[f"api-{i}"] = lambda url=url: _http_ok(f"{url}/health/ready")
        for i, url in enumerate(u.workers):
            checks[f"worker-{i}"] = lambda url=url: _http_ok(f"{url}/health/ready")
        if u.node_exporter:
            checks["node-exporter"] = lambda: _http_ok(f"{u.node_exporter}/metrics")
        return checks

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the stack's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def targets(self) -> list[Target]:
        """Prometheus's active targets."""
        data = _get_json(f"{self.urls.prometheus}/api/v1/targets?state=active")
        return [
            Target(
                job=t["labels"].get("job", ""),
                instance=t["labels"].get("instance", ""),
                process=t["labels"].get("process", ""),
                health=t.get("health", ""),
                last_error=t.get("lastError", ""),
            )
            for t in data["data"]["activeTargets"]
        ]

    def add_agent_target(self, name: str, port: int) -> Path:
        """Have Prometheus scrape another agent, ``ffe agent run --account A --health-port
        port`` started outside supervisord, as process ``name`` of job ffe-agent: a target file
        in prometheus/agents.d/, which Prometheus watches. Its alerts are the stack's agent's."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name) or name in self.processes():
            raise StackError(f"agent target {name!r}: use a new name of a-z, 0-9 and '-'")
        target = self.path("prometheus", "agents.d", f"{name}.json")
        entry = [{"targets": [f"{HOST}:{int(port)}"], "labels": {"process": name}}]
        partial = target.with_suffix(".tmp")  # Prometheus must never read half a file
        partial.write_text(json.dumps(entry))
        partial.replace(target)
        return target

    def remove_agent_target(self, name: str) -> None:
        """Stop scraping the agent ``add_agent_target`` added (stop the agent itself first)."""
        self.path("prometheus", "agents.d", f"{name}.json").unlink(missing_ok=True)

    def status(self) -> StackStatus:
        """Each process (state, pid, uptime, health) and each Prometheus target."""
        if self.supervisord_pid() is None:
            return StackStatus(
                [
                    ProcessStatus(n, "DOWN", 0, 0.0, False, "supervisord not running")
                    for n in self.processes()
                ]
            )
        info = self._info()
        checks = self.health_checks()
        out = StackStatus()
        for name in self.processes():
            i = info.get(name, {})
            state = i.get("statename", "UNKNOWN")
            healthy, detail = checks[name]() if state == "RUNNING" else (False, "")
            uptime = float(i.get("now", 0) - i.get("start", 0)) if state == "RUNNING" else 0.0
            out.processes.append(
                ProcessStatus(name, state, int(i.get("pid", 0)), uptime, healthy, detail)
            )
        with contextlib.suppress(OSError, ValueError, KeyError):
            out.targets = self.targets()
        return out

    def wait_healthy(self, names: Iterable[str] | None = None, timeout: float = 120) -> None:
        """Wait until ``names`` (default: every process) are RUNNING and healthy and, for the
        whole stack, every Prometheus target is up; StackError naming what is not, with its
        last log lines, after ``timeout`` seconds."""
        wanted = list(names) if names is not None else self.processes()
        deadline = time.monotonic() + timeout
        while True:
            problems = self._process_problems(wanted)
            if names is None and not problems:
                problems = self._target_problems()
            if not problems:
                return
            if time.monotonic() > deadline:
                raise self._error(problems)
            time.sleep(1)

    def _process_problems(self, wanted: list[str]) -> dict[str, str]:
        try:
            info = self._info()
        except OSError as exc:
            raise StackError(f"supervisord does not answer: {exc}") from None
        checks = self.health_checks()
        problems = {}
        for name in wanted:
            state = info.get(name, {}).get("statename", "UNKNOWN")
            if state == "FATAL":  # no use waiting: supervisord stopped retrying
                raise self._error({name: "FATAL: supervisord gave up starting it"})
            if state != "RUNNING":
                problems[name] = state
                continue
            healthy, detail = checks[name]()
            if not healthy:
                problems[name] = f"not ready: {detail}"
        return problems

    def _target_problems(self) -> dict[str, str]:
        expected = int(self._load_state().get("expected_targets", 0))
        try:
            targets = self.targets()
        except (OSError, ValueError, KeyError) as exc:
            return {"prometheus": f"targets not readable: {exc}"}
        problems = {
            t.process or t.instance: f"Prometheus target {t.job} {t.instance} is {t.health}"
            + (f": {t.last_error}" if t.last_error else "")
            for t in targets
            if t.health != "up"
        }
        if len(targets) < expected:
            problems["prometheus"] = f"{len(targets)} targets of {expected}"
        return problems

    def _error(self, problems: dict[str, str]) -> StackError:
        lines = [f"not up after the time limit ({len(problems)}):"]
        for name, what in problems.items():
            lines.append(f"- {name}: {what}")
            tail = self.log_tail(name, 15)
            if tail:
                lines.append("  last log lines:")
                lines += [f"    {line}" for line in tail]
        return StackError("\n".join(lines))

    def log_tail(self, name: str, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of ``name``'s log (DIR/logs/<name>.log)."""
        log = self.path("logs", f"{name}.log")
        if not log.exists():
            return []
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]

    # --- up, down ---

    def up(self, timeout: float = 240) -> Stack:
        """Make the folder (first time: cluster, schema, keys), render the configs, start
        supervisord and wait until everything is healthy and every target up."""
        started = time.monotonic()
        if self.supervisord_pid() is not None:
            self.wait_healthy(timeout=timeout)
            return self
        self._check_ready_to_run()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self._postgres_can_reach()
        self._save_state(
            settings={
                "port_base": self.port_base,
                "api_processes": self.api_processes,
                "agent_speed": self.agent_speed,
                "agent_params": self.agent_params,
                "backup_interval": self.backup_interval,
                "backup_keep": self.backup_keep,
                "tls_cert": None if self.own_cert else str(self.tls_cert),
                "tls_key": None if self.own_cert else str(self.tls_key),
                "rules_for_override": self.rules_for_override,
            }
        )
        self._make_secrets()
        self._make_tls()
        self._bootstrap()
        self.render()
        supervisord = Path(self.python).with_name("supervisord")
        command = (
            [str(supervisord)]
            if supervisord.exists()
            else [self.python, "-m", "supervisor.supervisord"]
        )
        _run([*command, "-c", str(self.path("supervisord.conf"))], "supervisord", env=self._env())
        remaining = max(10.0, timeout - (time.monotonic() - started))
        try:
            deadline = time.monotonic() + 30
            while (
                self.supervisord_pid() is None or not self.path("run", "supervisor.sock").exists()
            ):
                if time.monotonic() > deadline:
                    raise StackError(
                        "supervisord did not start:\n" + "\n".join(self.log_tail("supervisord"))
                    )
                time.sleep(0.2)
            pid = self.supervisord_pid()
            # supervisord made itself a session leader: every process it starts is in it.
            self._save_state(supervisord=pid, session=pid and _session(pid))
            self.wait_healthy(timeout=remaining)
        finally:
            self._record_pids()
        self._save_state(up_seconds=round(time.monotonic() - started, 1))
        return self

    def our_pids(self) -> list[int]:
        """Every live process of this stack: those carrying its marker (FFE_STACK_DIR in their
        environment), those in supervisord's session (nginx and Redis overwrite their
        environment with their process title, but keep the session), and PostgreSQL's
        backends (a session of their own each, working in the cluster's folder)."""
        session = self._load_state().get("session")
        me = {os.getpid(), os.getppid()}
        return [pid for pid in _all_pids() if pid not in me and self._is_ours(pid, session)]

    def _is_ours(self, pid: int, session: int | None = None) -> bool:
        proc = Path(f"/proc/{pid}")
        try:
            if f"{MARKER}={self.dir}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return True
            if session and _session(pid) == session:
                return True
            return os.readlink(proc / "cwd") == str(self.path("postgres", "data"))
        except (OSError, ValueError):
            return False

    def rss_bytes(self) -> int:
        """The resident memory of every process of the stack, summed."""
        total = 0
        for pid in self.our_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{pid}/status").read_text()
                kb = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
                total += int(kb.split()[1]) * 1024
        return total

    def down(self, purge: bool = False, timeout: float = 90) -> list[int]:
        """Stop everything: supervisord's shutdown (each program's stopsignal), then SIGKILL
        to every process still carrying the marker. Returns the pids that had to be killed.
        The folder stays (the cluster, the keys, the logs) unless ``purge``."""
        pid = self.supervisord_pid()
        if pid is not None:
            with contextlib.suppress(Exception):
                self._rpc().supervisor.shutdown()
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        killed: list[int] = []
        for _ in range(3):
            left = self.our_pids()
            if not left:
                break
            for leftover in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
                    killed.append(leftover)
            time.sleep(0.5)
        if purge and self.dir.exists():
            shutil.rmtree(self.dir)
        return killed

    # --- using it ---

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        """A request through nginx (TLS) to ``path``; ``key``: an API key sent as a bearer
        token; ``body``: sent as JSON. Returns (status, headers, body) whatever the status."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.urls.lb + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def prometheus_query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (``data.result`` of /api/v1/query)."""
        url = f"{self.urls.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        data = _get_json(url)
        if data.get("status") != "success":
            raise StackError(f"query {expr!r}: {data}")
        return list(data["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Every notification the webhook received: {"received", "path", "payload"} each,
        payload being Alertmanager's (status, alerts[], groupLabels, ...)."""
        file = self.path("alerts.jsonl")
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

    def __enter__(self) -> Stack:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


# --- helpers -------------------------------------------------------------------------------


def _rules_quickened(rule_file: Path, for_: str) -> str:
    """``rule_file`` with every alert's ``for:`` set to ``for_`` and no group interval (see
    ``rules_for_override``)."""
    import yaml

    doc = yaml.safe_load(rule_file.read_text())
    for group in doc.get("groups", []):
        group.pop("interval", None)
        for rule in group.get("rules", []):
            if "alert" in rule and "for" in rule:
                rule["for"] = for_
    return (
        f"# {rule_file.name} with for: {for_} and no group interval (rules_for_override)\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def _alertmanager_quickened(text: str) -> str:
    """Alertmanager's configuration with every route's group_wait at 1 s and group_interval at
    5 s (``rules_for_override``): a forced alert reaches the webhook seconds after it fires,
    not after the 10-30 s a real pager waits to batch alerts. Routing stays the repository's."""
    import yaml

    doc = yaml.safe_load(text)
    routes = [doc["route"]]
    while routes:
        route = routes.pop()
        if route is doc["route"] or "group_wait" in route:
            route["group_wait"] = "1s"
        if route is doc["route"] or "group_interval" in route:
            route["group_interval"] = "5s"
        routes.extend(route.get("routes", []))
    return "# group_wait 1s, group_interval 5s (rules_for_override)\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if done.returncode != 0:
        raise StackError(
            f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}{done.stdout[-2000:]}"
        )
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for us.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _session(pid: int) -> int:
    """The session id of ``pid`` (/proc/PID/stat's sixth field)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[3])


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((HOST, port)) == 0


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as r:
            return r.status == 200, f"HTTP {r.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read()[:300].decode('utf-8', 'replace')}"
    except (OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return dict(json.loads(r.read()))


def _sql_ok(url: str) -> tuple[bool, str]:
    import psycopg

    try:
        # prepare_threshold=None: nothing prepared, as PgBouncer's transaction mode wants.
        with psycopg.connect(url, connect_timeout=3, prepare_threshold=None) as conn:
            conn.execute("SELECT 1")
        return True, "SELECT 1"
    except psycopg.Error as exc:
        return False, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)


def _scheduler_ok(status_file: Path) -> tuple[bool, str]:
    """scheduler.py's last run: healthy until one has failed (none yet is healthy)."""
    try:
        last = json.loads(status_file.read_text())
    except FileNotFoundError:
        return True, "no run finished yet"
    except (OSError, ValueError) as exc:
        return False, f"status unreadable: {exc}"
    if last.get("ok"):
        return True, f"last run ok at {last.get('finished')}"
    return False, f"last run failed ({last.get('returncode')}): {last.get('output', '')[-300:]}"


def _redis_ok(url: str) -> tuple[bool, str]:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            return bool(client.ping()), "PING"
        finally:
            client.close()
    except redis.RedisError as exc:
        return False, str(exc)


# --- systemd units -------------------------------------------------------------------------


def verify_units(units: Path = SYSTEMD) -> list[str]:
    """`systemd-analyze verify` on every unit of ``units``, in a temporary root holding the
    host's own units (the targets ours refer to) and an executable /opt/ffe/bin/ffe (verify
    refuses an ExecStart that is not there): one instance of each template. Returns the
    problems: a failed verify, and every line verify printed about one of our files (an
    unknown key is only a warning to systemd, an error here)."""
    analyze = _which("systemd-analyze")
    if analyze is None:
        return ["systemd-analyze is missing (Debian package systemd)"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ffe-units-") as tmp:
        root = Path(tmp)
        host_units = Path("/usr/lib/systemd/system")
        if host_units.is_dir():
            shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
        etc = root / "etc/systemd/system"
        etc.mkdir(parents=True)
        for unit in sorted(units.iterdir()):
            if unit.suffix in {".service", ".target", ".socket", ".timer"}:
                shutil.copy(unit, etc / unit.name)
        ffe = root / "opt/ffe/bin/ffe"
        ffe.parent.mkdir(parents=True)
        ffe.write_text("#!/bin/sh\nexit 0\n")
        ffe.chmod(0o755)
        names = []
        for unit in sorted(etc.iterdir()):
            name = unit.name
            if "@." in name:
                name = name.replace("@.", "@8100.")  # an instance: a port, as ours take
            names.append(name)
        done = subprocess.run(
            [analyze, "verify", f"--root={root}", "--man=no", *names],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        ours = {u.name.split("@")[0].split(".")[0] for u in etc.iterdir()}
        for raw in (done.stdout + done.stderr).splitlines():
            line = raw.replace(tmp, "")
            if any(name in line for name in ours) and line not in problems:
                problems.append(line)
        if done.returncode != 0 and not problems:
            problems.append(f"systemd-analyze verify exited {done.returncode}: {done.stderr}")
    return problems


# --- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The bare-metal ffe stack under supervisord (docs/deploy.md)."
    )
    parser.add_argument("command", choices=["up", "down", "status", "render", "verify-units"])
    parser.add_argument("--dir", default=".stack", help="the stack's folder [.stack]")
    parser.add_argument("--port-base", type=int, help="every port at N + an offset")
    parser.add_argument("--api-processes", type=int, help="`ffe serve` processes [3]")
    parser.add_argument("--agent-speed", type=float, help="agent replay, bars a second [1]")
    parser.add_argument(
        "--agent-param",
        action="append",
        metavar="KEY=VALUE",
        help="an ensemble parameter for the agent (repeat), e.g. window=120",
    )
    parser.add_argument("--backup-interval", type=float, help="seconds between backups [3600]")
    parser.add_argument("--backup-keep", type=int, help="backups kept [24]")
    parser.add_argument("--tls-cert", help="nginx's certificate (default: a self-signed one)")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument("--timeout", type=float, default=240, help="seconds `up` may take")
    parser.add_argument("--purge", action="store_true", help="down: remove the folder too")
    parser.add_argument("--json", action="store_true", help="status: print JSON")
    args = parser.parse_args(argv)
    if args.command == "verify-units":
        problems = verify_units()
        for problem in problems:
            print(problem)
        print("systemd units: " + ("PROBLEMS" if problems else "ok"))
        return 1 if problems else 0
    try:
        stack = Stack(
            args.dir,
            args.port_base,
            args.api_processes,
            agent_speed=args.agent_speed,
            agent_params=None
            if args.agent_param is None
            else dict(kv.split("=", 1) for kv in args.agent_param),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            backup_interval=args.backup_interval,
            backup_keep=args.backup_keep,
        )
        if args.command == "up":
            stack.up(timeout=args.timeout)
            state = stack._load_state()
            print(
                f"stack up in {state.get('up_seconds')} s: {stack.urls.lb} "
                f"(CA {stack.ca_file}), Prometheus {stack.urls.prometheus}"
            )
            print(f"admin login: {stack.admin_user} / see {stack.path('secrets', 'stack.json')}")
        elif args.command == "render":
            stack.dir.mkdir(parents=True, exist_ok=True)
            stack.render()
            print(f"configs written to {stack.dir}")
        elif args.command == "status":
            status = stack.status()
            if args.json:
                print(json.dumps(asdict(status), indent=2))
            else:
                print(status.table())
            return 0 if status.ok else 1
        else:
            killed = stack.down(purge=args.purge)
            print("stack down" + (f"; killed leftovers {killed}" if killed else ""))
    except StackError as exc:
        print(f"stack {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
