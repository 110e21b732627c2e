"""The API under load: ffe's authenticated portfolio against a bare FastAPI endpoint, with wrk.

Two uvicorn servers run side by side with the same settings (as many worker processes as the
machine has usable cores, as a deployment would run them; log level warning, no access log;
uvicorn's default event loop, uvloop when installed): ``ffe serve`` on a fresh data directory
holding a journaled paper
run of ``sma_cross`` 10/20 on the bundled S&P 500, and ``bench/bare_fastapi.py``, one route
returning a small dict. wrk (2 threads, 64 connections) loads ``GET /api/v1/portfolio`` with
a read-scoped API key and ``GET /json`` in turn, each run after an untimed warm-up, the order
alternating over the rounds; the medians give:

- the request rate of ffe over the bare app's (target at least 0.5);
- ffe's p99 latency (target under 50 ms) and its errors, non-2xx answers and socket errors
  (target 0);
- the dashboard's first load: ``/overview`` with a session cookie, then every ``/static/``
  asset it references (and the modules and CSS URLs those reference), one after another over
  one keep-alive connection (target under 1 s; a browser fetches them in parallel).

ffe's rate limiter stays on but with a limit too high to refuse (it still counts every
request), and no background analysis runs. Inherited ``FFE_*`` variables are dropped, so the
servers run on the embedded defaults. Needs wrk (``apt-get install wrk``, ``brew install wrk``).

``--workers 1`` measures one process each. One event loop then answers all 64 connections in
turn while wrk takes part of the cores, and on the 2-core machine p99 swung from run to run:
69 to 232 ms for ffe, 35 to 150 ms for bare FastAPI (bench/results/api-1worker.json is one).

    python -m bench.bench_api [--workers N] [--rounds N] [--duration S] [--json PATH]
                              [--no-write] [--strict]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from bench.common import ffe_build, machine, table, utc_now, verdict, versions, write_result
from bench.page_load import first_load

ROOT = Path(__file__).resolve().parent.parent  # where `bench.bare_fastapi` imports from
RATIO_TARGET = 0.5
P99_TARGET_MS = 50.0
CONNECTIONS, THREADS = 64, 2
# High enough never to refuse, so the limiter's bookkeeping is measured but not its 429s.
RATE_LIMIT = 100_000_000
PORTFOLIO, BARE = "/api/v1/portfolio", "/json"
USER, PASSWORD = "bench", "bench-password-not-secret"
# The same uvicorn settings for both: `ffe serve` runs uvicorn with log level warning and no
# access log; {workers} processes each.
FFE_SERVER = "-m ffe serve --host 127.0.0.1 --workers {workers}"
BARE_SERVER = (
    "-m uvicorn bench.bare_fastapi:app --host 127.0.0.1 --workers {workers} --log-level warning "
    "--no-access-log"
)
PAPER_RUN = "agent run --strategy sma_cross --symbol SP500 -p fast=10 -p slow=20"
INSTALL_WRK = (
    "wrk is not installed: `sudo apt-get install wrk` (Debian, Ubuntu), `brew install wrk` "
    "(macOS), or build it from https://github.com/wg/wrk"
)


def _env(folder: Path) -> dict[str, str]:
    """The environment of every ffe process: a fresh data directory, no config files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FFE_")}
    env.update(
        FFE__DATA__DIR=str(folder / "data"),
        FFE_CONFIG_DIR=str(folder),
        FFE__API__RATE_LIMIT=str(RATE_LIMIT),
        FFE__API__ANALYSIS_SYMBOLS="[]",
    )
    return env


def _ffe(env: dict[str, str], *args: str) -> str:
    """Run ``python -m ffe ARGS`` with this interpreter; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "ffe", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"`ffe {' '.join(args[:2])}` failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _seed(env: dict[str, str]) -> str:
    """A read-scoped API key, a dashboard user and a journaled paper run; the key."""
    key = _ffe(env, "keys", "create", "bench", "--scope", "read").strip().splitlines()[-1]
    _ffe(env, "users", "create", USER, "--role", "viewer", "--password", PASSWORD)
    _ffe(env, *PAPER_RUN.split())
    return key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server in a process of its own: started on enter, stopped (by its process id) on
    exit, even after an error or a Ctrl-C. ``port_flag`` is the option that gives it its port
    (``ffe worker`` takes ``--health-port``)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        log: Path,
        ready_path: str,
        port_flag: str = "--port",
    ) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.ready_path, self.port_flag = ready_path, port_flag
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log.open("wb") as out:
            # A session of its own, so a Ctrl-C in the terminal reaches only this script,
            # which then stops the server in order.
            self.process = subprocess.Popen(
                [*self.command, self.port_flag, str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        path, deadline = self.ready_path, time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not answer {path} on {self.url}:\n{tail}")

    def settle(self, quiet_ms: float = 100.0, timeout: float = 180.0) -> None:
        """Wait until the server answers its ready path within ``quiet_ms``: a backlog left by
        the previous load (requests queued after wrk gave up) must not slow the next one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                httpx.get(self.url + self.ready_path, timeout=10.0)
                if (time.perf_counter() - started) * 1e3 < quiet_ms:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        print(f"warning: {self.name} still busy after {timeout:.0f} s", flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests per second, latency percentiles (ms) and errors from ``wrk --latency``."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    rate = find(r"^Requests/sec:\s+([\d.]+)")
    done = find(r"^\s*(\d+) requests in")
    if rate is None or done is None:
        raise RuntimeError(f"wrk's output was not understood:\n{output}")
    completed = int(done.group(1)) > 0  # wrk prints 0.00us percentiles when none completed
    percentiles = {
        f"p{p}_ms": _ms(m.group(1)) if completed and (m := find(rf"^\s+{p}%\s+(\S+)")) else None
        for p in (50, 90, 99)
    }
    sockets = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    )
    non_2xx = find(r"Non-2xx or 3xx responses: (\d+)")
    errors = sum(socket_errors.values()) + (int(non_2xx.group(1)) if non_2xx else 0)
    return {
        "requests_per_s": float(rate.group(1)),
        "requests": int(done.group(1)),
        **percentiles,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors,
        "errors": errors,
    }


def _wrk(wrk: str, url: str, seconds: float, header: str | None) -> dict[str, Any]:
    command = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency"]
    if header:
        command += ["-H", header]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed on {url}:\n{done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


@dataclass(frozen=True, slots=True)
class Target:
    """What wrk loads: a URL, an optional header, and the server behind it."""

    url: str
    header: str | None
    server: Server


def load_rounds(
    wrk: str, targets: dict[str, Target], args: argparse.Namespace
) -> dict[str, list[dict[str, Any]]]:
    """Each target loaded once a round after a warm-up, the order reversed every round, every
    run starting on quiet servers."""
    names = list(targets)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for number in range(args.rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            target = targets[name]
            for other in targets.values():
                other.server.settle()
            _wrk(wrk, target.url, args.warmup, target.header)
            run = _wrk(wrk, target.url, args.duration, target.header)
            runs[name].append(run)
            print(
                f"round {number + 1} {name:>4}: {run['requests_per_s']:8.0f} req/s, "
                f"p99 {_fmt_ms(run['p99_ms'])} ms, errors {run['errors']} "
                f"({run['socket_errors']['timeout']} timed out after wrk's 2 s)",
                flush=True,
            )
    return runs


def _latency(runs: list[dict[str, Any]], field: str) -> float:
    """The median of ``field`` over the runs; a run that completed nothing counts as infinite."""
    return float(statistics.median(run[field] or math.inf for run in runs))


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians over the rounds and the verdicts of the load targets."""
    bare = statistics.median(run["requests_per_s"] for run in runs["bare"])
    ffe = statistics.median(run["requests_per_s"] for run in runs["ffe"])
    p99 = _latency(runs["ffe"], "p99_ms")
    errors = sum(run["errors"] for run in runs["ffe"])
    stalled = sum(run["requests"] == 0 for run in runs["ffe"])
    ratios = [
        f["requests_per_s"] / b["requests_per_s"]
        for f, b in zip(runs["ffe"], runs["bare"], strict=True)
    ]
    return {
        "bare_requests_per_s": bare,
        "ffe_requests_per_s": ffe,
        "ratio": {
            "value": ffe / bare,
            "per_round": ratios,
            "target": RATIO_TARGET,
            "passed": ffe / bare >= RATIO_TARGET,
        },
        "ffe_p99_ms": {
            "value": _finite(p99),
            "worst": _finite(max(run["p99_ms"] or math.inf for run in runs["ffe"])),
            "p50": _finite(_latency(runs["ffe"], "p50_ms")),
            "target": P99_TARGET_MS,
            "passed": p99 < P99_TARGET_MS,
        },
        "ffe_errors": {
            "value": errors,
            # wrk counts no error when not one request came back in the whole run
            "runs_answering_nothing": stalled,
            "target": 0,
            "passed": errors == 0 and stalled == 0,
        },
        "bare_p99_ms": _finite(_latency(runs["bare"], "p99_ms")),
        "bare_errors": sum(run["errors"] for run in runs["bare"]),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _fmt_ms(value: float | None) -> str:
    return "none completed" if value is None else f"{value:.1f}"


def _rows(summary: dict[str, Any], dashboard: dict[str, Any]) -> list[list[object]]:
    ratio, p99, errors = summary["ratio"], summary["ffe_p99_ms"], summary["ffe_errors"]
    stalled = errors["runs_answering_nothing"]
    failed = f"{errors['value']}" + (f" + {stalled} runs answered nothing" if stalled else "")
    page, page_verdict = "not measured", "—"
    if dashboard["measured"]:
        first = dashboard["first_ms"]
        page, page_verdict = (
            "timed out" if first is None else f"{first:.0f}",
            verdict(dashboard["passed"]),
        )
    return [
        ["bare FastAPI GET /json (req/s)", f"{summary['bare_requests_per_s']:.0f}", "—", "—"],
        [f"ffe GET {PORTFOLIO}, API key (req/s)", f"{summary['ffe_requests_per_s']:.0f}", "—", "—"],
        ["ratio ffe / bare", f"{ratio['value']:.2f}", ">= 0.5", verdict(ratio["passed"])],
        [
            f"ffe p99 at {CONNECTIONS} connections (ms)",
            _fmt_ms(p99["value"]),
            "< 50",
            verdict(p99["passed"]),
        ],
        ["ffe errors (non-2xx + socket, all rounds)", failed, "0", verdict(errors["passed"])],
        ["dashboard first load, /overview + assets (ms)", page, "< 1000", page_verdict],
    ]


def _print(summary: dict[str, Any], dashboard: dict[str, Any]) -> None:
    print(table(["case", "measured", "target", "verdict"], _rows(summary, dashboard)))
    ratios = ", ".join(f"{r:.2f}" for r in summary["ratio"]["per_round"])
    latency = summary["ffe_p99_ms"]
    print(
        f"ratio by round: {ratios}; ffe p50 {_fmt_ms(latency['p50'])} ms, worst p99 "
        f"{_fmt_ms(latency['worst'])} ms; bare p99 {_fmt_ms(summary['bare_p99_ms'])} ms, "
        f"bare errors {summary['bare_errors']}"
    )
    print(f"ffe rate limit set to {RATE_LIMIT:,}/min: every request is counted, none refused")
    if "assets" in dashboard:
        failed = ", ".join(dashboard["failed"])
        print(
            f"dashboard: {len(dashboard['assets'])} assets, {dashboard['bytes']:,} bytes, "
            f"fetched in turn; repeat loads median {dashboard['repeat_median_ms']:.0f} ms"
            + (f"; FAILED: {failed}" if failed else "")
        )
    else:
        state = "failed" if dashboard["measured"] else "not measured"
        print(f"dashboard {state}: {dashboard['reason']}")
    print(f"ffe build: {ffe_build()}")


def _wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" [")[0]


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so a SIGTERM stops the servers too


def measure(wrk: str, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed, start both servers, load them, time the dashboard; stop the servers."""
    with tempfile.TemporaryDirectory(prefix="ffe-bench-api-") as name, ExitStack() as stack:
        folder = Path(name)
        env = _env(folder)
        print("seeding: API key, dashboard user, paper run of sma_cross on SP500", flush=True)
        key = _seed(env)
        ffe_command = [sys.executable, *FFE_SERVER.format(workers=args.workers).split()]
        ffe = stack.enter_context(
            Server("ffe", ffe_command, env, folder / "ffe.log", "/health/live")
        )
        bare_command = [sys.executable, *BARE_SERVER.format(workers=args.workers).split()]
        bare = stack.enter_context(
            Server("bare", bare_command, dict(os.environ), folder / "bare.log", BARE)
        )
        ffe.wait_ready()
        bare.wait_ready()
        print(f"both servers: {args.workers} uvicorn worker process(es) each", flush=True)
        targets = {
            "bare": Target(bare.url + BARE, None, bare),
            "ffe": Target(ffe.url + PORTFOLIO, f"Authorization: Bearer {key}", ffe),
        }
        runs = load_rounds(wrk, targets, args)
        ffe.settle()
        dashboard = first_load(ffe.url, (USER, PASSWORD), args.page_repeats)
    return {"rounds": runs, **summarise(runs)}, dashboard


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workers", type=int, default=_usable_cores(), help="processes per server (default: cores)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each")
    parser.add_argument("--page-repeats", type=int, default=4)
    parser.add_argument("--json", type=Path, help="write the results here, not bench/results")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if wrk is None:
        print(INSTALL_WRK, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        load, dashboard = measure(wrk, args)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, nothing written", file=sys.stderr)
        return 130
    _print(load, dashboard)
    payload = {
        "benchmark": "api",
        "when": utc_now(),
        "machine": machine(),
        "versions": {
            **versions("fastapi", "starlette", "uvicorn", "uvloop", "httpx"),
            "wrk": _wrk_version(wrk),
        },
        "build": ffe_build(),
        "settings": {
            "workers": args.workers,
            "connections": CONNECTIONS,
            "threads": THREADS,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rate_limit_per_min": RATE_LIMIT,
        },
        **load,
        "dashboard": dashboard,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"written to {args.json}")
    elif not args.no_write:
        print(f"written to {write_result('api', payload)}")
    passed = [load["ratio"]["passed"], load["ffe_p99_ms"]["passed"], load["ffe_errors"]["passed"]]
    if dashboard["measured"]:
        passed.append(dashboard["passed"])
    return 1 if args.strict and not all(passed) else 0


if __name__ == "__main__":
    sys.exit(main())
