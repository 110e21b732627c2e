"""A private PgBouncer in transaction mode in front of a test database, for tests and benches.

``private_pgbouncer(server_url)`` writes its own ini into a new folder, runs Debian's
``/usr/sbin/pgbouncer`` as the postgres OS user (PgBouncer refuses root) on a free loopback
port, yields a ``PgBouncer`` and stops the process on exit. It never touches a PgBouncer
service of the machine. Clients authenticate with ``trust``; the server side uses the test
database's own credentials (the test PostgreSQL is trust too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PGBOUNCER = "/usr/sbin/pgbouncer"
OS_USER = "postgres"
ADMIN_USER = "postgres"


def pgbouncer_problem() -> str | None:
    """Why a private PgBouncer cannot run here, or None when it can."""
    if not Path(PGBOUNCER).exists():
        return f"{PGBOUNCER} is missing (Debian package pgbouncer)"
    if os.geteuid() != 0:
        return f"not root (PgBouncer runs as the {OS_USER} user)"
    return None


@dataclass(frozen=True)
class PgBouncer:
    """A running private PgBouncer: ``url`` reaches the database through it."""

    url: str
    port: int
    folder: Path
    password: str | None = None

    @property
    def log(self) -> str:
        return (self.folder / "pgbouncer.log").read_text(errors="replace")

    def logins(self) -> int:
        """Client logins to the database so far (one per client connection opened), not
        counting the admin console's."""
        return sum(
            "login attempt:" in line and "login attempt: db=pgbouncer " not in line
            for line in self.log.splitlines()
        )

    def admin(self, command: str) -> list[dict[str, str]]:
        """Rows of an admin console command (``SHOW CLIENTS``...) on the pgbouncer database."""
        import psycopg

        conninfo = f"host=127.0.0.1 port={self.port} dbname=pgbouncer user={ADMIN_USER}"
        if self.password:
            conninfo += f" password={self.password}"
        # The admin console speaks only the simple query protocol: a ClientCursor uses it.
        with psycopg.connect(conninfo, autocommit=True, cursor_factory=psycopg.ClientCursor) as c:
            cursor = c.execute(command)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, map(str, row), strict=True)) for row in cursor.fetchall()]


def _free_port() -> int:
    """A free loopback port: from FFE_TEST_PGBOUNCER_PORTS ("LOW-HIGH") when set, else any."""
    spec = os.environ.get("FFE_TEST_PGBOUNCER_PORTS")
    candidates = range(0, 1)
    if spec:
        low, _, high = spec.partition("-")
        candidates = range(int(low), int(high) + 1)
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError(f"no free port in FFE_TEST_PGBOUNCER_PORTS={spec}")


@contextlib.contextmanager
def private_pgbouncer(
    server_url: str,
    *,
    pool_size: int = 2,
    password: str | None = None,
    deallocate: bool = False,
) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode with ``pool_size`` server connections for the database of
    ``server_url`` (postgresql://USER@HOST:PORT/DB); stopped and its folder removed on exit.

    With ``password`` clients log in with SCRAM-SHA-256 (as in production, where each new
    client connection pays that handshake), else with trust. With ``deallocate`` PgBouncer
    runs ``DEALLOCATE ALL`` on a server connection after every transaction."""
    server = urlsplit(server_url.replace("+asyncpg", ""))
    database = server.path.lstrip("/")
    user = server.username or "postgres"
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="ffe-pgbouncer-"))
    try:
        folder.chmod(0o755)
        ini = folder / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{database} = host={server.hostname or '127.0.0.1'} port={server.port or 5432} "
            f"dbname={database} user={user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            f"unix_socket_dir = {folder}\n"
            f"logfile = {folder / 'pgbouncer.log'}\n"
            f"pidfile = {folder / 'pgbouncer.pid'}\n"
            f"auth_type = {'scram-sha-256' if password else 'trust'}\n"
            f"auth_file = {folder / 'userlist.txt'}\n"
            f"admin_users = {ADMIN_USER}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 1000\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 1\n"
            "log_disconnections = 0\n"
            + ("server_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1\n" * deallocate)
        )
        secret = password or ""
        (folder / "userlist.txt").write_text(f'"{ADMIN_USER}" "{secret}"\n"{user}" "{secret}"\n')
        shutil.chown(folder, OS_USER, OS_USER)
        for path in folder.iterdir():
            shutil.chown(path, OS_USER, OS_USER)
        # PgBouncer logs to stderr as well as to its logfile: into a file, never a pipe, which
        # would fill up unread and stall PgBouncer once a few hundred clients had logged in.
        with (folder / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                ["runuser", "-u", OS_USER, "--", PGBOUNCER, str(ini)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            _wait_listening(port, process, folder / "stderr.log")
            login = f"{user}:{password}" if password else user
            yield PgBouncer(
                f"postgresql://{login}@127.0.0.1:{port}/{database}", port, folder, password
            )
        finally:
            _stop(process)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], stderr: Path, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = stderr.read_text(errors="replace")
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: {error.strip()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on {port} within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group we started (runuser and pgbouncer), SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
