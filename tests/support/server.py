"""An ffe server process for end-to-end tests: a free loopback port, start, wait until it
answers, stop with Ctrl-C and check it stopped cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from ffe.config import Settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def ffe_process(
    log: Path, *args: str, env: dict[str, str] | None = None, port_option: str = "--port"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``python -m ffe ARGS --port P`` (``port_option``: ``--health-port`` for a
    process that serves only its probes) with its output in ``log``; yield its base URL and
    the process at once (not waiting for it to answer). On leaving, Ctrl-C: it must stop
    within 30 s."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ffe", *args, port_option, str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"{args[0]} did not stop on Ctrl-C:\n{log.read_text()}") from None


@contextmanager
def ffe_server(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """``ffe_process`` once it answers, its output in FFE__DATA__DIR; yield its base URL and
    that file. On leaving it must have stopped cleanly: no error status, no traceback."""
    log = Path(os.environ["FFE__DATA__DIR"]) / f"server-{free_port()}.log"
    with ffe_process(log, *args, env=env) as (url, process):
        wait_live(url, process, log)
        yield url, log
    # uvicorn re-raises the SIGINT it handled, after a clean shutdown: 130 like any Ctrl-C
    assert process.returncode in (0, 130, -signal.SIGINT), log.read_text()
    assert "Traceback" not in log.read_text()


def wait_live(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until ``url``'s /health/live answers 200; AssertionError with the log if the process
    exits or nothing answers in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server did not come up:\n{log.read_text()}")


@contextmanager
def uvicorn_serving(settings: Settings, header_timeout_s: float = 10.0) -> Iterator[int]:
    """An app on ``settings``, on a real uvicorn at 127.0.0.1 (a free port) in a thread of
    this process, configured as ``ffe serve`` configures it; yields the port."""
    import uvicorn

    from ffe import bootstrap
    from ffe.api.app import create_app
    from ffe.api.server import server_options

    config = uvicorn.Config(
        create_app(bootstrap.components(settings)),
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        **server_options(header_timeout_s),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
