"""Load and chaos against the bare-metal stack (deploy/baremetal/stack.py), shared by
``bench/bench_stack.py`` and ``tests/integration/stack/test_stack_chaos.py``.

- ``make_keys``: read keys, one per simulated client (the API limits each key to
  ``api.rate_limit`` requests a minute, so one key cannot carry a load test honestly).
- ``Wrk``: wrk with ``mix.lua`` through nginx over TLS; its per-second answer/error timeline.
- ``Subscribers``: N WebSocket clients on ``/api/v1/stream``, counting messages.
- ``Submitter``: a small sweep every ``interval_s`` with the admin key; ids and failures.
- ``Prober``: a few plain requests a second, each on a new connection, per-second failures
  (wrk counts socket errors only in total; this says when they happened).
- ``HealthWatch``: every process's health twice a second, for time-to-recover.
- ``jobs_report`` / ``orders_report``: the journal's view (no job lost or doubled, no order
  doubled), read directly from the stack's PostgreSQL, read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIX_LUA = HERE / "mix.lua"
TERMINAL = ("finished", "failed", "cancelled")
# A sweep small enough to finish in seconds on a busy 2-core machine: 2 x 2 points.
SMALL_SWEEP = {
    "strategy": "sma_cross",
    "symbol": "SP500",
    "grid": {"fast": [5, 10], "slow": [30, 50]},
    "metric": "sharpe",
}
# One that keeps a worker busy for a while (the sweep "running on the workers").
BIG_SWEEP = {
    "strategy": "sma_cross",
    "symbol": "SP500",
    "grid": {"fast": list(range(2, 42)), "slow": list(range(50, 250, 10))},
    "metric": "sharpe",
}


def make_keys(stack: Any, n: int, scope: str = "read") -> list[str]:
    """``n`` new API keys of ``scope`` made through the API with the admin key."""
    keys = []
    for i in range(n):
        status, _, body = stack.request(
            "POST",
            "/api/v1/keys",
            key=stack.admin_key,
            body={"name": f"load-{i}", "scopes": [scope]},
        )
        if status != 201:
            raise RuntimeError(f"making key {i}: {status} {body[:200]!r}")
        keys.append(json.loads(body)["key"])
    return keys


def warm_keys(stack: Any, keys: list[str], threads: int = 4, timeout: float = 300) -> float:
    """Have every API process verify every key once, directly (not through nginx): each
    process checks a key's argon2 hash on first use (tens of milliseconds, on purpose) and
    remembers it, as it would for long-lived clients. Returns the seconds it took."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    deadline = started + timeout

    def touch(pair: tuple[str, str]) -> int:
        url, key = pair
        request = urllib.request.Request(
            f"{url}/api/v1/positions", headers={"Authorization": f"Bearer {key}"}
        )
        remaining = max(1.0, deadline - time.monotonic())
        with urllib.request.urlopen(request, timeout=min(60.0, remaining)) as answer:
            return int(answer.status)

    pairs = [(url, key) for key in keys for url in stack.urls.api]
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(touch, pairs))
    bad = [s for s in statuses if s != 200]
    if bad:
        raise RuntimeError(f"warming keys: {len(bad)} answers were not 200: {bad[:5]}")
    return time.monotonic() - started


# --- wrk ---------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What wrk and mix.lua's done() reported."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: dict[str, int]
    status_errors: int
    ok_by_second: dict[int, int]
    bad_by_second: dict[int, int]
    bad_statuses: dict[str, int]
    threads: int = 0
    connections: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + sum(self.socket_errors.values())


class Wrk:
    """wrk running mix.lua in the background against ``url``; ``result()`` waits for it."""

    def __init__(
        self,
        url: str,
        keys: list[str],
        folder: Path,
        *,
        duration_s: float,
        threads: int = 2,
        connections: int = 64,
        timeout_s: float = 5.0,
        rate: int | None = None,
        paths: list[str] | None = None,
    ) -> None:
        wrk = shutil.which("wrk")
        if wrk is None:
            raise RuntimeError("wrk is not installed (Debian package wrk)")
        keys_file = folder / "load-keys.txt"
        keys_file.write_text("\n".join(keys) + "\n")
        keys_file.chmod(0o600)
        self.threads, self.connections = threads, connections
        self.duration_s = duration_s
        env = {**os.environ, "FFE_KEYS_FILE": str(keys_file)}
        if rate:
            env["FFE_RATE"] = str(rate)  # requests a second per connection, at most
        if paths:
            env["FFE_PATHS"] = ",".join(paths)  # instead of the mix
        command = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={timeout_s:g}s",
            "--latency",
            "-s",
            str(MIX_LUA),
            url + "/",
        ]
        self.started = time.time()
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def result(self) -> WrkResult:
        try:
            out, err = self.process.communicate(timeout=self.duration_s + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise RuntimeError(f"wrk did not finish: {err[-500:]}") from None
        line = next((x for x in out.splitlines() if x.startswith("FFE_RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk gave no result: {out[-1000:]} {err[-1000:]}")
        data = json.loads(line.removeprefix("FFE_RESULT "))
        return WrkResult(
            requests=data["requests"],
            duration_s=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1e3,
            p90_ms=data["p90_us"] / 1e3,
            p95_ms=data["p95_us"] / 1e3,
            p99_ms=data["p99_us"] / 1e3,
            max_ms=data["max_us"] / 1e3,
            socket_errors=data["socket_errors"],
            status_errors=data["status_errors"],
            ok_by_second={int(k): v for k, v in data["ok_by_second"].items()},
            bad_by_second={int(k): v for k, v in data["bad_by_second"].items()},
            bad_statuses=data["bad_statuses"],
            threads=self.threads,
            connections=self.connections,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


# --- background clients -------------------------------------------------------------------


class _Background:
    """A daemon thread that runs ``_run`` until ``stop()``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _Background:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class Subscribers(_Background):
    """``n`` WebSocket clients on the live stream, reconnecting when dropped."""

    def __init__(self, stack: Any, n: int) -> None:
        super().__init__()
        self.stack, self.n = stack, n
        self.messages: Counter[str] = Counter()
        self.connected = 0
        self.reconnects = 0
        self.failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._client(i)) for i in range(self.n)]
        while not self._stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, number: int) -> None:
        from websockets.asyncio.client import connect

        url = self.stack.urls.lb.replace("https://", "wss://", 1) + "/api/v1/stream"
        headers = {"Authorization": f"Bearer {self.stack.api_key}"}
        first = True
        while not self._stop.is_set():
            try:
                async with connect(
                    url,
                    ssl=self.stack.ssl_context(),
                    additional_headers=headers,
                    open_timeout=10,
                    ping_interval=None,
                ) as ws:
                    self.connected += 1
                    if not first:
                        self.reconnects += 1
                    first = False
                    try:
                        async for message in ws:
                            kind = json.loads(message).get("type", "?")
                            self.messages[str(kind)] += 1
                    finally:
                        self.connected -= 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                await asyncio.sleep(1)

    @property
    def received(self) -> int:
        return sum(self.messages.values())


class Submitter(_Background):
    """A small sweep every ``interval_s`` with the admin key: the ids accepted, the
    seconds (time.time()) when a submission failed."""

    def __init__(self, stack: Any, interval_s: float = 1.0, body: dict[str, Any] = SMALL_SWEEP):
        super().__init__()
        self.stack, self.interval_s, self.body = stack, interval_s, body
        self.ids: list[str] = []
        self.failed_at: list[float] = []

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                status, _, raw = self.stack.request(
                    "POST", "/api/v1/sweeps", key=self.stack.admin_key, body=self.body, timeout=10
                )
                if status == 202:
                    self.ids.append(json.loads(raw)["id"])
                else:
                    self.failed_at.append(time.time())
            except Exception:
                self.failed_at.append(time.time())
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))


class Prober(_Background):
    """``per_second`` requests a second to ``path`` (read key), each on a new TLS connection:
    the seconds at which one failed (any non-2xx/3xx, refused, reset or timed out)."""

    def __init__(self, stack: Any, path: str = "/api/v1/portfolio", per_second: int = 4):
        super().__init__()
        self.stack, self.path, self.per_second = stack, path, per_second
        self.ok: Counter[int] = Counter()
        self.bad: Counter[int] = Counter()

    def _run(self) -> None:
        gap = 1.0 / self.per_second
        while not self._stop.is_set():
            started = time.time()
            try:
                status, _, _ = self.stack.request(
                    "GET", self.path, key=self.stack.api_key, timeout=5
                )
                good = 200 <= status < 400
            except Exception:
                good = False
            (self.ok if good else self.bad)[int(started)] += 1
            self._stop.wait(max(0.0, gap - (time.time() - started)))


class HealthWatch(_Background):
    """Every process's health about twice a second: [(time.time(), {name: problem})]."""

    def __init__(self, stack: Any) -> None:
        super().__init__()
        self.stack = stack
        self.samples: list[tuple[float, dict[str, str]]] = []

    def _run(self) -> None:
        names = self.stack.processes()
        while not self._stop.is_set():
            at = time.time()
            try:
                problems = self.stack._process_problems(names)
            except Exception as exc:  # supervisord busy, or a FATAL process
                problems = {"supervisord": str(exc)[:200]}
            self.samples.append((at, problems))
            self._stop.wait(max(0.0, 0.5 - (time.time() - at)))

    def healthy_from(self, after: float, target: str | None = None) -> float | None:
        """The first sample after ``after`` in which every process was healthy, once
        ``target`` (when given) had been seen unhealthy or replaced; None if none was."""
        waiting_for_target = target is not None
        for at, problems in self.samples:
            if at < after:
                continue
            if waiting_for_target and target in problems:
                waiting_for_target = False
            if not problems and not waiting_for_target:
                return at
        if waiting_for_target:  # restarted between two samples: the first healthy one
            return next((at for at, p in self.samples if at >= after and not p), None)
        return None

    def problems_between(self, start: float, end: float) -> dict[str, str]:
        found: dict[str, str] = {}
        for at, problems in self.samples:
            if start <= at <= end:
                for name, what in problems.items():
                    found.setdefault(name, what)
        return found


# --- error timeline ------------------------------------------------------------------------


@dataclass
class Disruption:
    """What clients saw around one chaos event (times are time.time())."""

    target: str
    killed_at: float
    errors: int  # failed answers and requests from the kill on
    first_error: float | None
    last_error: float | None
    healthy_at: float | None  # every process healthy again (and stayed so)
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def error_seconds(self) -> float:
        if self.first_error is None or self.last_error is None:
            return 0.0
        return self.last_error - self.first_error + 1

    @property
    def recovered_s(self) -> float | None:
        """Kill to: every process healthy and no error since."""
        if self.healthy_at is None:
            return None
        end = max(self.healthy_at, (self.last_error + 1) if self.last_error else 0.0)
        return end - self.killed_at


def disruption(
    target: str,
    killed_at: float,
    until: float,
    bad_by_second: dict[int, int],
    watch: HealthWatch,
) -> Disruption:
    """The errors (per second, summed over every client) from ``killed_at`` to ``until``."""
    seconds = sorted(s for s, n in bad_by_second.items() if n and killed_at - 1 <= s <= until)
    return Disruption(
        target=target,
        killed_at=killed_at,
        errors=sum(bad_by_second[s] for s in seconds),
        first_error=float(seconds[0]) if seconds else None,
        last_error=float(seconds[-1]) if seconds else None,
        healthy_at=watch.healthy_from(killed_at, target),
        problems=watch.problems_between(killed_at, until),
    )


def merge_seconds(*timelines: dict[int, int]) -> dict[int, int]:
    total: Counter[int] = Counter()
    for timeline in timelines:
        total.update(timeline)
    return dict(total)


# --- the journal ---------------------------------------------------------------------------


def running_job_worker(stack: Any) -> tuple[str, str] | None:
    """(job id, worker process name) of a running job whose worker is one of the stack's."""
    import psycopg

    pids = {stack.pid(name): name for name in stack.processes() if name.startswith("worker-")}
    with psycopg.connect(stack.urls.postgres, connect_timeout=5) as conn:
        rows = conn.execute("SELECT id, owner FROM jobs WHERE status = 'running'").fetchall()
    for job_id, owner in rows:
        parts = (owner or "").split(":")
        if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) in pids:
            return job_id, pids[int(parts[1])]
    return None


def jobs_report(stack: Any, ids: list[str], wait_s: float = 120) -> dict[str, Any]:
    """Every submitted job's row, waiting up to ``wait_s`` for each to reach a terminal
    state: lost (no row), stuck (not terminal), doubled (an id accepted twice, or two rows)."""
    import psycopg

    deadline = time.monotonic() + wait_s
    while True:
        with psycopg.connect(stack.urls.postgres, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT id, status, attempts, result IS NOT NULL, error FROM jobs "
                "WHERE id = ANY(%s)",
                (list(ids),),
            ).fetchall()
        found = Counter(r[0] for r in rows)
        stuck = [r[0] for r in rows if r[1] not in TERMINAL]
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(2)
    statuses = Counter(r[1] for r in rows)
    return {
        "submitted": len(ids),
        "accepted_twice": [i for i, n in Counter(ids).items() if n > 1],
        "lost": [i for i in ids if i not in found],
        "rows_twice": [i for i, n in found.items() if n > 1],
        "stuck": stuck,
        "statuses": dict(statuses),
        "retried": sum(1 for r in rows if r[2] > 1),
        "finished_without_result": [r[0] for r in rows if r[1] == "finished" and not r[3]],
        "failed_errors": sorted({(r[4] or "")[:120] for r in rows if r[1] == "failed"}),
    }


def jobs_ok(report: dict[str, Any]) -> bool:
    return not (
        report["accepted_twice"]
        or report["lost"]
        or report["rows_twice"]
        or report["stuck"]
        or report["finished_without_result"]
    )


def orders_report(stack: Any) -> dict[str, int]:
    """Orders and fills across the journal: an order id twice, or an order filled twice."""
    import psycopg

    with psycopg.connect(stack.urls.postgres, connect_timeout=5) as conn:
        orders, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT client_order_id) FROM orders"
        ).fetchone()
        fills = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT order_id FROM fills GROUP BY order_id "
            "HAVING count(*) > 1) AS t"
        ).fetchone()[0]
        overfilled = conn.execute(
            "SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(abs(quantity)) AS q "
            "FROM fills GROUP BY order_id) f ON f.order_id = o.id "
            "WHERE f.q > abs(o.quantity) + 1e-9"
        ).fetchone()[0]
    return {
        "orders": orders,
        "distinct_client_ids": distinct,
        "fills": fills,
        "orders_filled_twice": twice,
        "orders_overfilled": overfilled,
    }


def orders_ok(report: dict[str, int]) -> bool:
    return (
        report["orders"] == report["distinct_client_ids"]
        and report["orders_filled_twice"] == 0
        and report["orders_overfilled"] == 0
    )


def p99_ms(stack: Any, histogram: str, window_s: float) -> float | None:
    """The p99 of one of ffe's histograms (``ffe_decision_to_order_seconds``: the agent's
    decision to its order's acknowledgement; ``ffe_decision_latency_seconds``: the strategy's
    time) over the last ``window_s`` (Prometheus); None without a sample in the window."""
    window = f"{max(15, round(window_s))}s"
    expr = f"histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket[{window}])))"
    try:
        result = stack.prometheus_query(expr)
    except Exception:
        return None
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value * 1000  # NaN: no sample in the window
