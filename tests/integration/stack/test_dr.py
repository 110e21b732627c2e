"""Disaster recovery on the bare-metal stack for real (deploy/baremetal/dr.py): with the agent
trading, the journal's PostgreSQL is destroyed (SIGKILL, data folder deleted) and brought back
three ways, in order on one stack: point-in-time recovery from a base backup and the WAL
archive, a restore of the newest scheduled dump into a new cluster, and a failover to a
streaming standby. Each asserts what the recovered journal holds and that the stack is healthy
and trading again; never how long it took (bench/bench_dr.py measures that)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.support.stack import (
    ROOT,
    Stack,
    free_port_base,
    load_dr,
    require_stack,
    stack_folder,
    verify_units,
)

pytestmark = [pytest.mark.serial, pytest.mark.slow]

API_PROCESSES = 2
BACKUP_INTERVAL_S = 8
BACKUP_KEEP = 2
dr = load_dr()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_stack()
    base = free_port_base(API_PROCESSES)  # before the folder: no folder left if none is free
    folder = stack_folder()
    made = Stack(
        folder,
        port_base=base,
        api_processes=API_PROCESSES,
        agent_speed=4,  # a decision every quarter second once past the window
        agent_params={"window": "60"},
        backup_interval=BACKUP_INTERVAL_S,
        backup_keep=BACKUP_KEEP,
    )
    try:
        made.up(timeout=300)
        _wait_decisions(made, 5)
        yield made
    finally:
        try:
            dr.Standby(made, made.ports.lb + 30).stop()  # when a test made one
        finally:
            made.down()  # every process of the stack, the standby's too (they carry its marker)
            shutil.rmtree(folder, ignore_errors=True)


def _wait_decisions(stack: Stack, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while dr.journal_mark(stack.urls.postgres).decisions < count:
        assert time.monotonic() < deadline, "\n".join(stack.log_tail("agent", 30))
        time.sleep(1)


def _assert_back(stack: Stack, recovery: object) -> None:
    status = stack.status()
    unhealthy = [(p.name, p.state, p.health) for p in status.processes if not p.healthy]
    assert not unhealthy
    # The agent journals decisions again, past what the recovered journal held.
    now = dr.journal_mark(stack.urls.postgres)
    assert now.last_decision_id > recovery.after.last_decision_id  # type: ignore[attr-defined]


def test_pitr_when_the_cluster_is_destroyed_then_every_archived_write_comes_back(
    stack: Stack,
) -> None:
    base = dr.base_backup(stack)
    _wait_decisions(stack, dr.journal_mark(stack.urls.postgres).decisions + 10)
    # A point known to be archived: the segment holding it is switched out and copied.
    archive = stack.path("wal-archive")
    before_switch = set(archive.iterdir())
    with psycopg.connect(stack.urls.postgres_admin, autocommit=True) as conn:
        archived = dr.journal_mark(stack.urls.postgres)
        conn.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 30
    while set(archive.iterdir()) == before_switch:
        assert time.monotonic() < deadline, "the switched segment was not archived"
        time.sleep(0.5)

    recovery = dr.restore_pitr(stack, base)

    assert recovery.after.decisions >= archived.decisions
    assert recovery.after.last_decision_id >= archived.last_decision_id
    assert recovery.after.last_decision_id <= recovery.before.last_decision_id
    _assert_back(stack, recovery)


def test_restore_when_the_cluster_is_destroyed_then_the_newest_dump_comes_back_whole(
    stack: Stack,
) -> None:
    # The backup program runs on its schedule and keeps only the newest BACKUP_KEEP.
    dumps = dr.wait_backups(stack, BACKUP_KEEP + 1, timeout=BACKUP_INTERVAL_S * 8 + 60)
    assert len(dumps) == BACKUP_KEEP
    newest = dr.newest_backup(stack)
    manifest = json.loads(newest.with_name(newest.name + ".json").read_text())

    recovery = dr.restore_from_dump(stack, newest)

    # Everything up to the backup, table by table (ffe restore checked the checksums too).
    rows = manifest["tables"]
    assert recovery.after.decisions == rows["decisions"]["rows"]
    assert recovery.after.orders == rows["orders"]["rows"]
    assert recovery.after.fills == rows["fills"]["rows"]
    assert recovery.after.last_decision_id <= recovery.before.last_decision_id
    _assert_back(stack, recovery)


def test_failover_when_the_primary_is_lost_then_the_standby_serves_the_stack(
    stack: Stack,
) -> None:
    standby = dr.Standby(stack, stack.ports.lb + 30).create()
    _wait_decisions(stack, dr.journal_mark(stack.urls.postgres).decisions + 10)
    standby.caught_up()
    replicated = dr.journal_mark(stack.urls.postgres)  # at most this much, then more
    _wait_decisions(stack, replicated.decisions + 5)

    recovery = dr.failover(stack, standby)

    # The promoted standby holds the primary's journal up to the replication point.
    assert recovery.after.decisions >= replicated.decisions
    assert recovery.after.last_decision_id >= replicated.last_decision_id
    assert recovery.after.last_decision_id <= recovery.before.last_decision_id
    assert stack.ports.postgres == standby.port
    # PgBouncer now pools connections to the standby's port.
    with psycopg.connect(stack.urls.pgbouncer, prepare_threshold=None) as conn:
        row = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
    assert row == (standby.port, False)
    status = stack.status()
    unhealthy = [
        (p.name, p.state, p.health)
        for p in status.processes
        if p.name != "postgres" and not p.healthy
    ]
    assert not unhealthy
    now = dr.journal_mark(standby.url)
    assert now.last_decision_id > recovery.after.last_decision_id


def test_backup_timer_when_its_schedule_is_misspelt_then_verify_names_it(tmp_path: Path) -> None:
    # The timer and its service are verified with the other units (test_stack.py); a timer
    # without a valid schedule is refused, never left to never fire.
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing")
    units = tmp_path / "units"
    shutil.copytree(ROOT / "deploy" / "baremetal" / "systemd", units)
    timer = units / "ffe-backup.timer"
    assert "OnCalendar=hourly" in timer.read_text()
    timer.write_text(timer.read_text().replace("OnCalendar=", "OnCalender="))

    problems = verify_units(units)

    assert any("ffe-backup.timer" in p and "OnCalender" in p for p in problems), problems
