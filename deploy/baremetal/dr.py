"""Disaster recovery for the bare-metal stack (deploy/baremetal/stack.py): the three ways back
after the journal's PostgreSQL is lost, as functions a drill (bench/bench_dr.py,
tests/integration/stack/test_dr.py) runs against a live stack, step by step as an operator
would (docs/deploy.md, "Disaster recovery", has the same steps as commands).

- ``restore_from_dump(stack, backup)``: a new cluster (initdb), the ffe role and database, then
  ``ffe restore`` of a dump that the stack's ``backup`` program (``ffe backup`` on a schedule)
  made. Loses everything after that dump.
- ``restore_pitr(stack, base)``: the base backup (``base_backup``, pg_basebackup) copied back
  and every archived WAL segment replayed (restore_command, to the end of the archive). Loses
  the segment that was not archived yet: at most archive_timeout (30 s) of writes.
- ``failover(stack, standby)``: a streaming standby (``Standby``, pg_basebackup -R on a port of
  its own) promoted, PgBouncer and the processes that reach PostgreSQL directly (LISTEN_URL,
  the backup program) pointed at it. Loses what the primary committed and had not sent yet.

``destroy(stack)`` is the disaster: PostgreSQL killed (SIGKILL, no shutdown checkpoint, no
last archive) and its data folder deleted, as when its disk is lost. Each function returns a
``Recovery`` with the journal's last decision before the disaster and after the recovery (the
RPO, in seconds of journal lost) and the time from the disaster to every process healthy and
the agent journaling decisions again (the RTO).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # the name tests/support/stack.py loads stack.py under: one module, one StackError
    from ffe_baremetal_stack import (  # type: ignore[import-not-found]
        HOST,
        POSTGRES_USER,
        Stack,
        StackError,
        _postgres_bin,
        _run,
    )
except ImportError:  # run beside stack.py (deploy/baremetal on sys.path)
    from stack import HOST, POSTGRES_USER, Stack, StackError, _postgres_bin, _run

#: The stack's processes that use the journal: stopped while it is restored, started after.
FFE_PREFIXES = ("api-", "worker-", "precompute", "agent", "backup")


@dataclass(frozen=True)
class JournalMark:
    """Where the journal stood: its decisions (the agent writes one a bar), orders, fills and
    its WAL position."""

    decisions: int
    last_decision_id: int
    last_decision_at: datetime | None
    orders: int
    fills: int
    lsn: str

    def lost_seconds(self, later: JournalMark) -> float:
        """Seconds of decisions in this mark that ``later`` (a recovered journal) lacks."""
        if self.last_decision_at is None:
            return 0.0
        if later.last_decision_at is None:
            return float("inf")
        return max(0.0, (self.last_decision_at - later.last_decision_at).total_seconds())


@dataclass
class Recovery:
    """One drill: what was lost and how long the way back took."""

    method: str
    before: JournalMark  # the journal just before the disaster
    after: JournalMark  # the recovered journal, before any process wrote to it again
    rto_s: float  # disaster -> every process healthy and the agent deciding again
    steps: dict[str, float] = field(default_factory=dict)  # seconds after the disaster

    @property
    def rpo_s(self) -> float:
        return self.before.lost_seconds(self.after)

    @property
    def decisions_lost(self) -> int:
        return max(0, self.before.last_decision_id - self.after.last_decision_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "rto_s": round(self.rto_s, 1),
            "rpo_s": round(self.rpo_s, 1),
            "decisions_lost": self.decisions_lost,
            "orders_before": self.before.orders,
            "orders_after": self.after.orders,
            "steps": {k: round(v, 1) for k, v in self.steps.items()},
        }


def journal_mark(url: str) -> JournalMark:
    """The journal at ``url`` (a postgresql:// URL, straight to PostgreSQL) now."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        count, last_id, last_at = conn.execute(
            "SELECT count(*), coalesce(max(id), 0), max(created_at) FROM decisions"
        ).fetchone() or (0, 0, None)
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        fills = conn.execute("SELECT count(*) FROM fills").fetchone()
        lsn = conn.execute(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
            " ELSE pg_current_wal_lsn() END"
        ).fetchone()
    if isinstance(last_at, str):  # the journal's UtcDateTime may be text on some schemas
        last_at = datetime.fromisoformat(last_at)
    if last_at is not None and last_at.tzinfo is None:
        last_at = last_at.replace(tzinfo=UTC)
    return JournalMark(
        int(count),
        int(last_id),
        last_at,
        int(orders[0]) if orders else 0,
        int(fills[0]) if fills else 0,
        str(lsn[0]) if lsn else "",
    )


def ffe_processes(stack: Stack) -> list[str]:
    return [name for name in stack.processes() if name.startswith(FFE_PREFIXES)]


# --- the disaster --------------------------------------------------------------------------


def destroy(stack: Stack) -> datetime:
    """The disk under PostgreSQL is lost: every process of the cluster SIGKILLed (no shutdown
    checkpoint, no last archive), its data folder deleted, supervisord told to leave it
    stopped. Returns when it happened."""
    at = datetime.now(UTC)
    data = stack.path("postgres", "data")
    lost = data.with_name(f"data.lost-{at:%Y%m%dT%H%M%S}")
    pids = [pid for pid in stack.our_pids() if _cwd(pid).startswith(str(data))]
    # Renamed first, so that supervisord's restart finds no cluster to bring back.
    data.rename(lost)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stack.stop("postgres")
    _wait(lambda: not any(_alive(pid) for pid in pids), 30, "the killed PostgreSQL to exit")
    shutil.rmtree(lost)
    return at


# --- backups -------------------------------------------------------------------------------


def newest_backup(stack: Stack) -> Path:
    """The newest dump the ``backup`` program wrote (with its manifest beside it)."""
    dumps = sorted(
        p for p in stack.path("backups").glob("*.dump") if p.with_name(p.name + ".json").exists()
    )
    if not dumps:
        raise StackError(f"no backup in {stack.path('backups')} yet")
    return dumps[-1]  # <db>-<UTC time>.dump: the name sorts by time


def wait_backups(stack: Stack, count: int, timeout: float = 120) -> list[Path]:
    """Wait until the ``backup`` program has written ``count`` dumps since now (counting those
    its retention already deleted); returns the dumps kept."""
    known = set(stack.path("backups").glob("*.dump"))
    seen: set[Path] = set()

    def enough() -> bool:
        seen.update(set(stack.path("backups").glob("*.dump")) - known)
        return len(seen) >= count

    _wait(enough, timeout, f"{count} scheduled backups")
    return sorted(stack.path("backups").glob("*.dump"))


def base_backup(stack: Stack) -> Path:
    """pg_basebackup of the running cluster into DIR/basebackup/<UTC time> (plain format, its
    WAL streamed alongside so that it is consistent on its own); returns the folder."""
    at = datetime.now(UTC)
    root = stack.path("basebackup")
    _postgres_folder(root)
    target = root / f"{at:%Y%m%dT%H%M%S}"
    _run(
        [
            *_as_postgres(stack),
            str(_pg_bin("pg_basebackup")),
            "-h",
            HOST,
            "-p",
            str(stack.ports.postgres),
            "-U",
            "postgres",
            "-D",
            str(target),
            "-X",
            "stream",
            "-c",
            "fast",
        ],
        "pg_basebackup",
        env=_pg_env(stack),
    )
    return target


# --- restore from a dump -------------------------------------------------------------------


def restore_from_dump(stack: Stack, backup: Path | None = None, timeout: float = 300) -> Recovery:
    """Destroy the cluster, then recover from ``backup`` (default: the newest dump): a new
    cluster (initdb), the ffe role and database, ``ffe restore``, every process started."""
    backup = backup or newest_backup(stack)
    before = journal_mark(stack.urls.postgres)
    started = time.monotonic()
    destroyed_at = destroy(stack)
    steps: dict[str, float] = {}
    _stop_all(stack, ffe_processes(stack))
    steps["ffe_stopped"] = time.monotonic() - started
    # The new cluster's WAL segments have the old one's names: its archive starts afresh,
    # the old one is kept beside it.
    archive = stack.path("wal-archive")
    if archive.exists():
        archive.rename(archive.with_name(f"wal-archive.before-{destroyed_at:%Y%m%dT%H%M%S}"))
    _postgres_folder(archive)
    data = stack.path("postgres", "data")
    stack.initdb(data)
    stack._write_postgres_conf()
    stack.start("postgres", wait=False)
    _wait(lambda: _superuser_ok(stack), 60, "the new cluster to accept connections")
    steps["cluster_ready"] = time.monotonic() - started
    stack.create_database()
    _ffe_direct(stack, "restore", "--force", "--yes", "--json", str(backup))
    steps["restored"] = time.monotonic() - started
    after = journal_mark(stack.urls.postgres)
    rto = _bring_back(stack, destroyed_at, started, steps, timeout)
    return Recovery("dump", before, after, rto, steps)


# --- point-in-time recovery ----------------------------------------------------------------


def restore_pitr(stack: Stack, base: Path, timeout: float = 300) -> Recovery:
    """Destroy the cluster, then recover to the end of the WAL archive: ``base`` (from
    ``base_backup``) copied back with recovery.signal, PostgreSQL replaying every archived
    segment (restore_command) and promoting itself, every process started."""
    before = journal_mark(stack.urls.postgres)
    started = time.monotonic()
    destroyed_at = destroy(stack)
    steps: dict[str, float] = {}
    _stop_all(stack, ffe_processes(stack))
    steps["ffe_stopped"] = time.monotonic() - started
    data = stack.path("postgres", "data")
    # cp -a keeps postgres's ownership and the 0700 mode PostgreSQL insists on.
    _run(["cp", "-a", str(base), str(data)], "copying the base backup back")
    (data / "recovery.signal").touch()
    shutil.chown(data / "recovery.signal", POSTGRES_USER, POSTGRES_USER)
    stack._write_postgres_conf()  # restore_command: cp from the stack's wal-archive
    stack.start("postgres", wait=False)
    _wait(lambda: _primary_ok(stack), timeout, "the replay of the WAL archive and promotion")
    steps["replayed"] = time.monotonic() - started
    after = journal_mark(stack.urls.postgres)
    rto = _bring_back(stack, destroyed_at, started, steps, timeout)
    return Recovery("pitr", before, after, rto, steps)


# --- a streaming standby and failover ------------------------------------------------------


class Standby:
    """A second cluster on ``port`` (loopback) in DIR/standby, made with pg_basebackup -R from
    the stack's PostgreSQL and streaming from it (asynchronous replication). It archives into
    DIR/standby/wal-archive once promoted. Started with pg_ctl, outside supervisord; carries
    the stack's marker, so ``Stack.down`` ends it too."""

    def __init__(self, stack: Stack, port: int) -> None:
        self.stack = stack
        self.port = port
        self.dir = stack.path("standby")
        self.data = self.dir / "data"
        self.archive = self.dir / "wal-archive"

    @property
    def url(self) -> str:
        return self.stack.urls.postgres.replace(
            f":{self.stack.ports.postgres}/", f":{self.port}/", 1
        )

    def create(self, timeout: float = 120) -> Standby:
        if self.port in self.stack.ports.all() or self.port in (5432, 6379):
            raise StackError(f"port {self.port} is taken by the stack or the machine")
        _postgres_folder(self.dir)
        _postgres_folder(self.archive)
        shutil.rmtree(self.data, ignore_errors=True)
        _run(
            [
                *_as_postgres(self.stack),
                str(_pg_bin("pg_basebackup")),
                "-h",
                HOST,
                "-p",
                str(self.stack.ports.postgres),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-X",
                "stream",
                "-c",
                "fast",
                "-R",  # standby.signal and primary_conninfo: a streaming standby
            ],
            "pg_basebackup -R (the standby)",
            env=_pg_env(self.stack),
        )
        self.stack._write_postgres_conf(self.data, self.port, self.archive)
        log = self.dir / "postgres.log"
        try:
            self.pg_ctl("-l", str(log), "-t", str(int(timeout)), "start")
        except StackError as exc:  # pg_ctl says only "examine the log": say what it holds
            tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
            raise StackError(f"{exc}\nthe standby's log ({log}):\n" + "\n".join(tail)) from None
        _wait(self.streaming, timeout, "the standby to stream from the primary")
        return self

    def pg_ctl(self, *args: str) -> None:
        _run(
            [*_as_postgres(self.stack), str(_pg_bin("pg_ctl")), "-D", str(self.data), "-w", *args],
            f"pg_ctl {args[-1]} (the standby)",
            env=self.stack._env(),
        )

    def streaming(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.stack.urls.postgres_admin, connect_timeout=3) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            return bool(row and row[0])
        except psycopg.Error:
            return False

    def caught_up(self, timeout: float = 60) -> None:
        """Wait until the standby has replayed what the primary has written so far."""
        import psycopg

        with psycopg.connect(self.stack.urls.postgres_admin, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        target = str(row[0]) if row else "0/0"

        def replayed() -> bool:
            with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
                ).fetchone()
            return bool(done and done[0])

        _wait(replayed, timeout, f"the standby to replay up to {target}")

    def promote(self) -> None:
        self.pg_ctl("-t", "60", "promote")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(StackError):
                self.pg_ctl("-t", "60", "-m", "fast", "stop")


def failover(stack: Stack, standby: Standby, timeout: float = 300) -> Recovery:
    """The primary is lost (``destroy``); ``standby`` is promoted; PgBouncer's [databases]
    rewritten to it and reloaded (SIGHUP); the processes that reach PostgreSQL directly
    (LISTEN_URL, migrations, the backup program) restarted with its port."""
    before = journal_mark(stack.urls.postgres)
    started = time.monotonic()
    destroyed_at = destroy(stack)
    steps: dict[str, float] = {}
    standby.promote()
    _wait(lambda: _primary_ok(stack, standby.url), 60, "the promoted standby to accept writes")
    steps["promoted"] = time.monotonic() - started
    after = journal_mark(standby.url)
    # The stack's database is now the standby's port: every config says so from here on.
    stack._save_state(postgres_port=standby.port)
    stack.ports = replace(stack.ports, postgres=standby.port)
    stack.render()  # pgbouncer.ini's [databases] and each program's direct URL
    stack.kill("pgbouncer", signal.SIGHUP)  # PgBouncer reloads its config: no restart
    steps["pgbouncer_repointed"] = time.monotonic() - started
    _apply_config(stack)
    steps["ffe_restarted"] = time.monotonic() - started
    names = [n for n in stack.processes() if n != "postgres"]  # the lost primary's slot
    stack.wait_healthy(names, timeout=timeout)
    steps["healthy"] = time.monotonic() - started
    _wait(lambda: _deciding_since(standby.url, destroyed_at), timeout, "the agent to decide")
    rto = time.monotonic() - started
    steps["trading"] = rto
    return Recovery("failover", before, after, rto, steps)


# --- helpers -------------------------------------------------------------------------------


def _bring_back(
    stack: Stack, destroyed_at: datetime, started: float, steps: dict[str, float], timeout: float
) -> float:
    _start_all(stack, ffe_processes(stack))
    stack.wait_healthy(timeout=timeout)
    steps["healthy"] = time.monotonic() - started
    _wait(
        lambda: _deciding_since(stack.urls.postgres, destroyed_at),
        timeout,
        "the agent to journal a decision again",
    )
    rto = time.monotonic() - started
    steps["trading"] = rto
    return rto


def _apply_config(stack: Stack) -> None:
    """supervisorctl update: programs whose rendered config changed are stopped, replaced
    and started again (the others keep running)."""
    rpc = stack._rpc().supervisor
    added, changed, removed = rpc.reloadConfig()[0]
    for name in [*changed, *removed]:
        with contextlib.suppress(Exception):
            rpc.stopProcessGroup(name, True)
        rpc.removeProcessGroup(name)
    for name in [*changed, *added]:
        if name != "postgres":  # the lost primary's program stays stopped
            rpc.addProcessGroup(name)
    stack._record_pids()


def _stop_all(stack: Stack, names: list[str], grace: float = 5, timeout: float = 90) -> None:
    """Stop ``names`` at once; SIGKILL whatever still runs after ``grace`` seconds: with the
    database gone a worker has no job to hand back, so its 20 s drain is only lost time."""
    rpc = stack._rpc().supervisor
    for name in names:
        with contextlib.suppress(Exception):  # NOT_RUNNING
            rpc.stopProcess(name, False)

    def stopped() -> bool:
        states = {i["name"]: i["statename"] for i in rpc.getAllProcessInfo()}
        return all(states.get(n) in ("STOPPED", "EXITED", "FATAL") for n in names)

    with contextlib.suppress(StackError):
        _wait(stopped, grace, "a graceful stop")
        return
    for info in rpc.getAllProcessInfo():
        if info["name"] in names and info["statename"] == "STOPPING":
            with contextlib.suppress(Exception):
                rpc.signalProcess(info["name"], "KILL")
    _wait(stopped, timeout, f"{', '.join(names)} to stop")


def _start_all(stack: Stack, names: list[str]) -> None:
    rpc = stack._rpc().supervisor
    for name in names:
        with contextlib.suppress(Exception):  # ALREADY_STARTED
            rpc.startProcess(name, False)
    stack._record_pids()


def _deciding_since(url: str, since: datetime) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM decisions WHERE created_at > %s", (since,)
            ).fetchone()
        return bool(row and row[0])
    except psycopg.Error:
        return False


def _superuser_ok(stack: Stack) -> bool:
    import psycopg

    try:
        with psycopg.connect(stack.urls.postgres_admin, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _primary_ok(stack: Stack, url: str | None = None) -> bool:
    """PostgreSQL at ``url`` (default: the stack's) accepts the ffe user and is out of
    recovery (a hot standby answers SELECT 1 while it still replays)."""
    import psycopg

    try:
        with psycopg.connect(url or stack.urls.postgres, connect_timeout=3) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row) and not row[0]
    except psycopg.Error:
        return False


def _ffe_direct(stack: Stack, *args: str) -> str:
    """An ffe command straight to PostgreSQL (not PgBouncer), as migrations run."""
    env = stack._env({**stack.ffe_env(), "FFE__DATABASE__URL": stack.urls.postgres})
    env["FFE__DATABASE__PGBOUNCER"] = "false"
    return _run([stack.python, "-m", "ffe", *args], f"ffe {args[0]}", env=env)


def _as_postgres(stack: Stack) -> list[str]:
    return [stack.bin["runuser"], "-u", POSTGRES_USER, "--"]


def _pg_env(stack: Stack) -> dict[str, str]:
    # The superuser's password in the environment, never on a command line.
    return stack._env({"PGPASSWORD": stack._secret("postgres_superuser_password")})


def _pg_bin(name: str) -> Path:
    folder = _postgres_bin()
    if folder is None or not (folder / name).exists():
        raise StackError(f"{name} is missing (Debian package postgresql)")
    return folder / name


def _postgres_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, POSTGRES_USER, POSTGRES_USER)
    path.chmod(0o700)


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait(ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:  # not ready yet (a server still starting)
            pass
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


__all__ = [
    "JournalMark",
    "Recovery",
    "Standby",
    "base_backup",
    "destroy",
    "failover",
    "journal_mark",
    "newest_backup",
    "restore_from_dump",
    "restore_pitr",
    "wait_backups",
]
