"""What each kind of process of the stack used during a load window: CPU (from /proc, every
process of each supervisord program's tree, job processes and PostgreSQL backends included),
resident memory, and the work it did (requests, jobs, analyses, bars, journal commits), for
docs/scaling.md's capacity table.

``Usage.start(stack)`` before the window, ``.stop()`` after it; ``.figures(requests)`` gives,
per group, CPU as a share of one core, memory and the work counters over the window.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
GROUPS = {  # supervisord program name prefix -> group
    "api-": "ffe serve",
    "worker-": "ffe worker",
    "precompute": "ffe precompute",
    "agent": "ffe agent run",
    "postgres": "PostgreSQL",
    "pgbouncer": "PgBouncer",
    "redis": "Redis",
    "nginx": "nginx",
    "prometheus": "Prometheus",
}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree[ppid].append(int(entry.name))
    return tree


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _cpu_and_rss(pid: int) -> tuple[float, int]:
    """CPU seconds of ``pid`` and of its children it has reaped, and its resident bytes."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0.0, 0
    return ticks / TICKS, rss


def _group(name: str) -> str | None:
    for prefix, group in GROUPS.items():
        if name == prefix or (prefix.endswith("-") and name.startswith(prefix)):
            return group
    return None


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]  # group -> CPU seconds
    rss: dict[str, int]  # group -> resident bytes
    processes: dict[str, int]  # group -> supervisord programs in it
    counters: dict[str, float] = field(default_factory=dict)


def sample(stack: Any) -> Sample:
    children = _children()
    cpu: dict[str, float] = defaultdict(float)
    rss: dict[str, int] = defaultdict(int)
    programs: dict[str, int] = defaultdict(int)
    for name in stack.processes():
        group = _group(name)
        if group is None:
            continue
        try:
            pid = stack.pid(name)
        except Exception:
            pid = 0
        if not pid:
            continue
        programs[group] += 1
        for member in _tree(pid, children):
            seconds, resident = _cpu_and_rss(member)
            cpu[group] += seconds
            rss[group] += resident
    return Sample(time.monotonic(), dict(cpu), dict(rss), dict(programs), _counters(stack))


def _counters(stack: Any) -> dict[str, float]:
    """Work done so far: jobs finished by the workers, analyses, journal commits, Redis."""
    out: dict[str, float] = {}
    queries = {
        "jobs_finished": 'sum(ffe_worker_jobs{state="finished"})',
        "analysis_seconds_sum": "sum(ffe_analysis_duration_seconds_sum)",
        "analysis_count": "sum(ffe_analysis_duration_seconds_count)",
        "strategy_seconds_sum": "sum(ffe_decision_latency_seconds_sum)",
        "strategy_count": "sum(ffe_decision_latency_seconds_count)",
    }
    for name, expr in queries.items():
        try:
            found = stack.prometheus_query(expr)
            out[name] = float(found[0]["value"][1]) if found else 0.0
        except Exception:
            out[name] = float("nan")
    try:
        import psycopg

        with psycopg.connect(stack.urls.postgres, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT xact_commit, numbackends FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
        out["pg_commits"], out["pg_backends"] = float(row[0]), float(row[1])
    except Exception:
        out["pg_commits"] = out["pg_backends"] = float("nan")
    try:
        import redis

        client = redis.Redis.from_url(stack.urls.redis, socket_timeout=5)
        info = client.info()
        out["redis_used_memory"] = float(info["used_memory"])
        out["redis_clients"] = float(info["connected_clients"])
        out["redis_commands"] = float(info["total_commands_processed"])
        client.close()
    except Exception:
        out["redis_used_memory"] = out["redis_clients"] = out["redis_commands"] = float("nan")
    return out


class Usage:
    """CPU, memory and work per group of processes between ``start`` and ``stop``."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.first: Sample | None = None
        self.last: Sample | None = None

    def start(self) -> Usage:
        self.first = sample(self.stack)
        return self

    def stop(self) -> Usage:
        self.last = sample(self.stack)
        return self

    def figures(self, requests: int) -> dict[str, dict[str, Any]]:
        """Per group: CPU in % of one core (all its processes), per process, memory (MB, all
        and per process), and what it did a second over the window."""
        first, last = self.first, self.last
        if first is None or last is None:
            raise RuntimeError("Usage.figures before start() and stop()")
        wall = last.at - first.at
        delta = {k: last.counters.get(k, 0.0) - first.counters.get(k, 0.0) for k in last.counters}
        out: dict[str, dict[str, Any]] = {}
        for group in sorted(set(first.cpu) | set(last.cpu)):
            n = max(1, last.processes.get(group, 1))
            cpu = 100 * (last.cpu.get(group, 0.0) - first.cpu.get(group, 0.0)) / wall
            rss = max(first.rss.get(group, 0), last.rss.get(group, 0)) / 2**20
            out[group] = {
                "processes": n,
                "cpu_pct": round(cpu, 1),
                "cpu_pct_per_process": round(cpu / n, 1),
                "rss_mb": round(rss),
                "rss_mb_per_process": round(rss / n),
            }
        work = {
            "ffe serve": ("requests_per_s", requests / wall),
            "ffe worker": ("jobs_finished_per_min", 60 * delta.get("jobs_finished", 0.0) / wall),
            "PostgreSQL": ("commits_per_s", delta.get("pg_commits", 0.0) / wall),
            "Redis": ("commands_per_s", delta.get("redis_commands", 0.0) / wall),
        }
        for group, (name, value) in work.items():
            if group in out:
                out[group][name] = round(value, 1)
        if "ffe precompute" in out and delta.get("analysis_count"):
            per = delta["analysis_seconds_sum"] / delta["analysis_count"]
            out["ffe precompute"]["seconds_per_analysis"] = round(per, 3)
        if "ffe agent run" in out and delta.get("strategy_count"):
            out["ffe agent run"]["decisions_per_s"] = round(delta["strategy_count"] / wall, 2)
            per = delta["strategy_seconds_sum"] / delta["strategy_count"]
            out["ffe agent run"]["strategy_ms_per_decision"] = round(1000 * per, 1)
        if "Redis" in out:
            out["Redis"]["used_memory_mb"] = round(last.counters["redis_used_memory"] / 2**20, 1)
            out["Redis"]["clients"] = last.counters["redis_clients"]
        if "PostgreSQL" in out:
            out["PostgreSQL"]["backends"] = last.counters["pg_backends"]
        out["_window_s"] = {"seconds": round(wall, 1)}
        return out
