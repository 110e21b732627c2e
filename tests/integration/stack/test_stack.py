"""The bare-metal stack (deploy/baremetal/stack.py) for real: every process of compose's
`full` topology on loopback under supervisord, up once for the module (about 30-60 s), then
looked at, poked and torn down; and the systemd units through `systemd-analyze verify`."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from tests.support.stack import (
    ROOT,
    STACK_PY,
    Ports,
    Stack,
    StackError,
    free_port_base,
    in_ci,
    require_stack,
    stack_folder,
    verify_units,
)

pytestmark = [pytest.mark.serial, pytest.mark.slow]

API_PROCESSES = 3
MACHINE_PORTS = {5432, 6379}  # the machine's own PostgreSQL and Redis: never ours


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_stack()
    folder = stack_folder()
    made = Stack(folder, port_base=free_port_base(API_PROCESSES), api_processes=API_PROCESSES)
    try:
        made.up(timeout=240)
        yield made
    finally:
        made.down()
        shutil.rmtree(folder, ignore_errors=True)


def test_stack_when_up_then_every_process_runs_healthy(stack: Stack) -> None:
    status = stack.status()

    names = [p.name for p in status.processes]
    expected = {"postgres", "pgbouncer", "redis", "nginx", "precompute", "agent", "webhook"}
    expected |= {"prometheus", "alertmanager", "worker-0", "worker-1"}
    expected |= {f"api-{i}" for i in range(API_PROCESSES)}
    assert expected <= set(names)
    not_running = [(p.name, p.state, p.health) for p in status.processes if p.state != "RUNNING"]
    assert not not_running
    unhealthy = [(p.name, p.health) for p in status.processes if not p.healthy]
    assert not unhealthy


def test_prometheus_when_up_then_every_process_is_an_up_target(stack: Stack) -> None:
    targets = stack.targets()

    by_process = {t.process: t for t in targets}
    expected = {f"api-{i}" for i in range(API_PROCESSES)} | {"worker-0", "worker-1"}
    expected |= {"precompute", "agent", "prometheus", "alertmanager"}
    if stack.urls.node_exporter:
        expected.add("node-exporter")
    assert set(by_process) == expected
    assert {t.job for t in targets if t.process.startswith("api-")} == {"ffe-api"}
    down = [(t.process, t.health, t.last_error) for t in targets if t.health != "up"]
    assert not down
    # The API processes were scraped with the read key: their own metrics came back.
    series = stack.prometheus_query('ffe_http_requests_total{job="ffe-api"}')
    assert {s["metric"]["process"] for s in series} == {f"api-{i}" for i in range(API_PROCESSES)}
    # Every rule file of deploy/monitoring/rules was loaded.
    rule_files = {p.name for p in (ROOT / "deploy" / "monitoring" / "rules").glob("*.yml")}
    loaded = stack.path("prometheus", "rules")
    assert {p.name for p in loaded.glob("*.yml")} == rule_files
    groups = _get_json_groups(stack)
    assert {Path(g).name for g in groups} == rule_files


def _get_json_groups(stack: Stack) -> set[str]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{stack.urls.prometheus}/api/v1/rules", timeout=5) as r:
        data = json.loads(r.read())
    return {group["file"] for group in data["data"]["groups"]}


def test_lb_when_asked_over_tls_then_the_api_answers_ready(stack: Stack) -> None:
    status, _, body = stack.request("GET", "/health/ready")

    assert status == 200, body
    assert b'"status":"ok"' in body.replace(b" ", b"")
    # TLS for real: a client that does not trust the stack's certificate is refused.
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        _tls_socket(stack, ssl.create_default_context()).close()


def test_lb_when_the_stream_is_opened_then_the_websocket_upgrade_goes_through(
    stack: Stack,
) -> None:
    conn = _tls_socket(stack, stack.ssl_context())
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        conn.sendall(
            (
                f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{stack.ports.lb}\r\n"
                f"Authorization: Bearer {stack.api_key}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = conn.recv(4096).decode("latin-1")
    finally:
        conn.close()

    assert head.startswith("HTTP/1.1 101"), head


def _tls_socket(stack: Stack, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", stack.ports.lb), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_status_command_when_up_then_it_names_every_process(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, str(STACK_PY), "status", "--dir", str(stack.dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    for name in stack.processes():
        assert name in done.stdout
    assert "NOT READY" not in done.stdout


def test_stack_when_up_then_it_uses_its_own_database_and_redis(stack: Stack) -> None:
    urls = stack.urls
    for url in (urls.postgres, urls.pgbouncer, urls.redis):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port not in MACHINE_PORTS
    # No process of the stack holds a connection to the machine's PostgreSQL or Redis.
    ours = []
    for pid in stack.our_pids():
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        ours += [(pid, c.raddr) for c in conns if c.raddr and c.raddr.port in MACHINE_PORTS]
    assert not ours


def test_postgres_when_a_segment_is_switched_then_the_wal_is_archived(stack: Stack) -> None:
    import psycopg

    archive = stack.path("wal-archive")
    before = set(os.listdir(archive))
    with psycopg.connect(stack.urls.postgres_admin, autocommit=True) as conn:
        conn.execute("SELECT pg_switch_wal()")  # closes the segment; archive_command copies it

    deadline = time.monotonic() + 30
    while set(os.listdir(archive)) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(os.listdir(archive)) - before


def test_alertmanager_when_an_alert_fires_then_the_webhook_gets_it(stack: Stack) -> None:
    import json
    import urllib.request

    # Prometheus sends its alerts to this Alertmanager ...
    with urllib.request.urlopen(f"{stack.urls.prometheus}/api/v1/alertmanagers", timeout=5) as r:
        active = json.loads(r.read())["data"]["activeAlertmanagers"]
    assert [a["url"] for a in active] == [f"{stack.urls.alertmanager}/api/v2/alerts"]
    # ... and Alertmanager routes one (critical: group_wait 10 s) to the webhook.
    alert = [{"labels": {"alertname": "StackSelfTest", "severity": "critical"}}]
    request = urllib.request.Request(
        f"{stack.urls.alertmanager}/api/v2/alerts",
        json.dumps(alert).encode(),
        {"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()

    deadline = time.monotonic() + 60
    got: list[dict[str, object]] = []
    while not got and time.monotonic() < deadline:
        time.sleep(1)
        got = [
            a
            for a in stack.alerts()
            if a["payload"]["commonLabels"].get("alertname") == "StackSelfTest"
        ]
    assert got
    assert got[0]["path"] == "/critical"


def test_api_process_when_killed_then_the_lb_answers_and_it_comes_back(stack: Stack) -> None:
    old = stack.kill("api-1", signal.SIGKILL)

    answers = [stack.request("GET", "/health/ready")[0] for _ in range(12)]
    stack.wait_healthy(["api-1"], timeout=90)

    assert answers == [200] * 12  # nginx tried another process for every request
    assert stack.pid("api-1") not in (0, old)


def test_stack_when_down_then_no_process_of_it_is_left(stack: Stack) -> None:
    recorded = set(stack._load_state().get("pids", []))
    before = stack.our_pids()
    assert recorded
    assert before

    killed = stack.down()

    assert stack.our_pids() == []
    alive = [pid for pid in recorded | set(before) if psutil.pid_exists(pid) and _same(pid)]
    assert not alive, alive
    assert killed == []  # supervisord's own shutdown stopped everything
    assert stack.supervisord_pid() is None


def _same(pid: int) -> bool:
    # A pid reused since by someone else's process is not ours: ours name or work in the
    # stack's folder (made by stack_folder(), prefix ffe-stack-).
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return "ffe-stack-" in " ".join([*process.cmdline(), process.cwd()])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def test_systemd_units_when_verified_then_systemd_accepts_them() -> None:
    _require_systemd_analyze()

    assert verify_units() == []


def test_systemd_units_when_a_key_is_misspelt_then_verify_names_it(tmp_path: Path) -> None:
    _require_systemd_analyze()
    units = tmp_path / "units"
    shutil.copytree(ROOT / "deploy" / "baremetal" / "systemd", units)
    unit = units / "ffe-worker@.service"
    unit.write_text(unit.read_text().replace("Restart=always", "Restrat=always"))

    problems = verify_units(units)

    assert any("ffe-worker@.service" in p and "Restrat" in p for p in problems), problems


def _require_systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if in_ci():
            pytest.fail("systemd-analyze is missing; CI=true requires it (Debian package systemd)")
        pytest.skip("systemd-analyze is missing")


def test_ports_when_based_then_every_port_is_distinct_and_never_the_machines(
    tmp_path: Path,
) -> None:
    ports = Ports.from_base(48000, API_PROCESSES)

    assert len(set(ports.all())) == len(ports.all())
    assert ports.lb == 48000
    assert ports.api == (48020, 48021, 48022)
    assert not MACHINE_PORTS & set(Ports.defaults(API_PROCESSES).all())
    with pytest.raises(StackError, match="machine's PostgreSQL or Redis"):
        Stack(tmp_path, port_base=5428)  # PostgreSQL would land on 5432


def test_stack_when_a_port_is_taken_then_up_names_it_and_starts_nothing() -> None:
    require_stack()
    folder = stack_folder()
    base = free_port_base(API_PROCESSES)
    taken = socket.socket()
    # As a server binds: a connection of an earlier stack left in TIME_WAIT does not stop it.
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        taken.bind(("127.0.0.1", base + 1))  # Prometheus's
        taken.listen()
        made = Stack(folder, port_base=base, api_processes=API_PROCESSES)

        with pytest.raises(
            StackError, match=f"ports already in use on 127.0.0.1: \\[{base + 1}\\]"
        ):
            made.up(timeout=30)

        assert made.supervisord_pid() is None
        assert made.our_pids() == []
    finally:
        taken.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_status_when_nothing_runs_then_every_process_is_down(tmp_path: Path) -> None:
    status = Stack(tmp_path, port_base=48000).status()

    assert not status.ok
    assert {p.state for p in status.processes} == {"DOWN"}
    assert "api-2" in status.table()
