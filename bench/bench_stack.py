"""The bare-metal stack under load, then under attack (issue 18): every process of compose's
`full` topology on loopback (deploy/baremetal/stack.py), loaded through nginx over TLS.

Load: wrk with bench/stack/mix.lua (health checks, portfolio, positions, analysis, decisions,
status, orders, fills, jobs; one read key per simulated client), N WebSocket subscribers on
the live stream, a small sweep submitted every second with the admin key while a large sweep
runs on the workers, and the agent replaying SP500. Reported against the issue's targets
(there is no peer): >= 1,000 requests/s, p95 < 100 ms, p99 < 250 ms, 0 errors, the agent's
decision-to-order p99 < 50 ms (Prometheus, ffe_decision_to_order_seconds; the strategy's own
time, ffe_decision_latency_seconds, is reported beside it).

Chaos (``--chaos``), under the same load: SIGKILL in turn an API process, a worker mid-job,
the pre-compute, the agent, PgBouncer, Redis and PostgreSQL (kept down 20 s, then started).
For each: the errors clients saw and for how long (per-second timeline from wrk's Lua hooks,
a prober and the job submitter), the time until every process was healthy and errors had
stopped (target < 30 s); then the journal: no job lost or doubled, no order doubled, and the
agent's trades identical to an undisturbed replay of the same bars.

    python -m bench.bench_stack [--duration 60] [--connections 32] [--threads 2]
        [--api-processes 3] [--subscribers 50] [--keys 100] [--submit-every 1]
        [--routes] [--chaos] [--events api-1,...,postgres]
        [--port-base 49000] [--agent-speed 3] [--no-write] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, table, utc_now, verdict, versions, write_result
from bench.stack import load
from bench.stack.parity import agent_parity
from bench.stack.usage import Usage

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"rps": 1000.0, "p95_ms": 100.0, "p99_ms": 250.0, "errors": 0, "decision_p99_ms": 50.0}
RECOVERY_TARGET_S = 30.0
CHAOS = ("api-1", "worker", "precompute", "agent", "pgbouncer", "redis", "postgres")
POSTGRES_DOWN_S = 20.0
ROUTES = (
    "/health/live",
    "/health/ready",
    "/api/v1/portfolio",
    "/api/v1/positions",
    "/api/v1/analysis/SP500",
    "/api/v1/decisions?limit=20",
    "/api/v1/status",
    "/api/v1/jobs?limit=20",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--api-processes", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=50, help="WebSocket clients")
    parser.add_argument("--keys", type=int, default=100, help="read keys (simulated clients)")
    parser.add_argument(
        "--submit-every", type=float, default=1.0, help="seconds between small sweeps"
    )
    parser.add_argument("--routes", action="store_true", help="also each route alone (5 s)")
    parser.add_argument("--chaos", action="store_true", help="then kill each process in turn")
    parser.add_argument("--chaos-window", type=float, default=50.0, help="seconds per event")
    parser.add_argument(
        "--events",
        default=",".join(CHAOS),
        help=f"the chaos events to run, in this order (default: all, {','.join(CHAOS)})",
    )
    parser.add_argument("--port-base", type=int, default=49000)
    parser.add_argument("--agent-speed", type=float, default=3.0, help="bars a second")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def import_stack() -> Any:
    sys.path.insert(0, str(ROOT / "deploy" / "baremetal"))
    import stack

    return stack


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stack_module = import_stack()
    if os.geteuid() != 0:
        print("the stack runs PostgreSQL as the postgres user: run as root", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="ffe-stack-bench-"))
    folder.chmod(0o755)
    stack = stack_module.Stack(
        folder,
        port_base=args.port_base,
        api_processes=args.api_processes,
        agent_speed=args.agent_speed,
        agent_params={"window": "120"},  # decides from bar 120 on, a minute in
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    payload: dict[str, Any] = {
        "date": utc_now(),
        "machine_before": machine(),
        "versions": versions("ffe", "websockets"),
        "settings": vars(args),
    }
    try:
        started = time.monotonic()
        stack.up(timeout=300)
        payload["up_s"] = round(time.monotonic() - started, 1)
        print(f"stack up in {payload['up_s']} s ({len(stack.processes())} processes)")
        payload.update(run(stack, folder, args))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut `down` short
        stack.down()
        left = stack.our_pids()
        shutil.rmtree(folder, ignore_errors=True)
        payload["left_after_down"] = left
    payload["machine_after"] = machine()
    if not args.no_write:
        print(f"wrote {write_result('stack', payload)}")
    return 1 if args.strict and not payload.get("passed") else 0


def run(stack: Any, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    keys = load.make_keys(stack, args.keys)
    _wait_for_decisions(stack, timeout=180)
    big = stack.request("POST", "/api/v1/sweeps", key=stack.admin_key, body=load.BIG_SWEEP)
    big_ids = [json.loads(big[2])["id"]] if big[0] == 202 else []
    subscribers = load.Subscribers(stack, args.subscribers).start()
    submitter = load.Submitter(stack, interval_s=args.submit_every).start()
    watch = load.HealthWatch(stack).start()
    prober = load.Prober(stack).start()
    clients = (subscribers, submitter, watch, prober)
    try:
        # Warm-up: every key verified once by every API process (argon2, then remembered),
        # then a few seconds of the mix.
        out["warm_keys_s"] = round(load.warm_keys(stack, keys), 1)
        print(
            f"{len(keys)} keys verified by {args.api_processes} API processes "
            f"in {out['warm_keys_s']} s"
        )
        load.Wrk(stack.urls.lb, keys, folder, duration_s=5, connections=args.connections).result()
        rss_before = stack.rss_bytes()
        received = subscribers.received
        usage = Usage(stack).start()
        wrk = load.Wrk(
            stack.urls.lb,
            keys,
            folder,
            duration_s=args.duration,
            threads=args.threads,
            connections=args.connections,
        )
        result = wrk.result()
        usage.stop()
        out["load"] = _load_figures(stack, result, args.duration)
        out["usage"] = usage.figures(result.requests)
        out["load"]["ws_messages"] = subscribers.received - received
        out["load"]["ws_subscribers"] = subscribers.connected
        out["load"]["machine"] = machine()
        out["load"]["rss_gib"] = round(max(rss_before, stack.rss_bytes()) / 2**30, 2)
        print_load(out["load"])
        print_usage(out["usage"])
        if args.routes:
            out["routes"] = _routes(stack, keys, folder, args)
        out["undisturbed"] = {
            "jobs": load.jobs_report(stack, submitter.ids, wait_s=5),
            "orders": load.orders_report(stack),
        }
        if args.chaos:
            out["chaos"] = _chaos(stack, keys, folder, args, watch, prober, submitter)
    finally:
        for client in clients:
            client.stop()
    out["ws_messages_total"] = dict(subscribers.messages)
    out["ws_reconnects"] = subscribers.reconnects
    out["jobs"] = load.jobs_report(stack, submitter.ids + big_ids, wait_s=240)
    out["orders"] = load.orders_report(stack)
    parity = agent_parity(stack.urls.postgres)
    out["agent_parity"] = {
        "bar": parity.bar,
        "agent_trades": parity.agent_trades,
        "replay_trades": parity.replay_trades,
        "orders": parity.orders,
        "distinct_orders": parity.distinct_orders,
        "mismatches": parity.mismatches[:5],
        "ok": parity.ok,
    }
    print_consistency(out)
    out["passed"] = _passed(out)
    for report in (out["jobs"], out["undisturbed"]["jobs"]):  # ids: the first few, and a count
        for name in ("lost", "rows_twice", "stuck", "accepted_twice"):
            report[f"{name}_count"] = len(report[name])
            report[name] = report[name][:5]
    return out


def _wait_for_decisions(stack: Any, timeout: float) -> None:
    """Until the agent has decided once (it decides from bar `window` on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.prometheus_query("sum(ffe_decisions_total) > 0"):
            return
        time.sleep(2)
    print("warning: no decision yet; decision latency will be missing", file=sys.stderr)


def _load_figures(stack: Any, result: load.WrkResult, duration: float) -> dict[str, Any]:
    time.sleep(6)  # one more scrape (5 s) of the window's last decisions
    return {
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p95_ms": result.p95_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "errors": result.errors,
        "socket_errors": result.socket_errors,
        "bad_statuses": result.bad_statuses,
        "threads": result.threads,
        "connections": result.connections,
        "decision_p99_ms": load.p99_ms(stack, "ffe_decision_to_order_seconds", duration),
        "strategy_p99_ms": load.p99_ms(stack, "ffe_decision_latency_seconds", duration),
    }


def _ms(value: float | None) -> Any:
    return "n/a" if value is None else round(value, 1)


def print_load(f: dict[str, Any]) -> None:
    dp99 = f["decision_p99_ms"]
    rows = [
        ("requests/s", f["rps"], f">= {TARGETS['rps']:,.0f}", verdict(f["rps"] >= TARGETS["rps"])),
        ("p50 ms", f["p50_ms"], "", ""),
        ("p95 ms", f["p95_ms"], "< 100", verdict(f["p95_ms"] < TARGETS["p95_ms"])),
        ("p99 ms", f["p99_ms"], "< 250", verdict(f["p99_ms"] < TARGETS["p99_ms"])),
        ("errors", f["errors"], "0", verdict(f["errors"] == 0)),
        ("WebSocket messages", f["ws_messages"], "", ""),
        (
            "decision-to-order p99 ms",
            "n/a" if dp99 is None else round(dp99, 1),
            "< 50",
            "n/a" if dp99 is None else verdict(dp99 < TARGETS["decision_p99_ms"]),
        ),
        ("strategy p99 ms (the ensemble's forecasts)", _ms(f.get("strategy_p99_ms")), "", ""),
    ]
    print(
        f"\nLoad: {f['connections']} connections, {f['threads']} wrk threads, "
        f"load average {f['machine']['load_average_1_5_15']}"
    )
    print(table(["", "measured", "target", ""], rows))


def print_usage(usage: dict[str, dict[str, Any]]) -> None:
    """Each kind of process during the load: CPU, memory and work done (docs/scaling.md)."""
    rows = []
    for group, f in usage.items():
        if group.startswith("_"):
            continue
        work = ", ".join(
            f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in f.items()
            if k not in ("processes", "cpu_pct", "cpu_pct_per_process", "rss_mb")
            and k != "rss_mb_per_process"
        )
        rows.append(
            (
                group,
                f["processes"],
                f["cpu_pct"],
                f["cpu_pct_per_process"],
                f["rss_mb_per_process"],
                work,
            )
        )
    print(f"\nDuring the load ({usage['_window_s']['seconds']} s), CPU in % of one core:")
    print(table(["", "processes", "CPU %", "CPU % each", "MB each", "work"], rows))


def _routes(stack: Any, keys: list[str], folder: Path, args: argparse.Namespace) -> list[Any]:
    """Each route of the mix alone for 5 s: where the time goes."""
    rows = []
    for route in ROUTES:
        r = load.Wrk(
            stack.urls.lb, keys, folder, duration_s=5, connections=args.connections, paths=[route]
        ).result()
        rows.append((route, round(r.rps, 1), r.p50_ms, r.p99_ms, r.errors))
    print("\nEach route alone (5 s):")
    print(table(["route", "requests/s", "p50 ms", "p99 ms", "errors"], rows))
    return rows


def _chaos(
    stack: Any,
    keys: list[str],
    folder: Path,
    args: argparse.Namespace,
    watch: load.HealthWatch,
    prober: load.Prober,
    submitter: load.Submitter,
) -> list[dict[str, Any]]:
    events = []
    chosen = [e for e in args.events.split(",") if e]
    unknown = sorted(set(chosen) - set(CHAOS))
    if unknown:
        raise SystemExit(f"--events: unknown {', '.join(unknown)}; choose from {', '.join(CHAOS)}")
    for target in chosen:
        stack.wait_healthy(timeout=120)
        window = args.chaos_window + (POSTGRES_DOWN_S if target == "postgres" else 0)
        wrk = load.Wrk(
            stack.urls.lb,
            keys,
            folder,
            duration_s=window,
            threads=args.threads,
            connections=args.connections,
        )
        time.sleep(5)
        name, note = target, ""
        if target == "worker":
            found = None
            deadline = time.monotonic() + 30
            while found is None and time.monotonic() < deadline:
                found = load.running_job_worker(stack)
                time.sleep(0.5)
            name, note = (found[1], f"mid-job {found[0][:8]}") if found else ("worker-0", "idle")
        killed_at = time.time()
        if target == "postgres":
            old = stack.crash("postgres")  # SIGKILLed and kept down (autorestart would not)
            time.sleep(max(0.0, POSTGRES_DOWN_S - (time.time() - killed_at)))
            stack.start("postgres", wait=False)
        else:
            old = stack.kill(name, signal.SIGKILL)
        result = wrk.result()
        with_clients = load.merge_seconds(
            result.bad_by_second,
            dict(prober.bad),
            {int(t): 1 for t in submitter.failed_at},
        )
        try:
            stack.wait_healthy(timeout=120)
        except Exception as exc:
            note += f" not healthy after 120 s: {str(exc)[:200]}"
        seen = load.disruption(name, killed_at, time.time(), with_clients, watch)
        event = {
            "target": name,
            "note": note,
            "old_pid": old,
            "new_pid": stack.pid(name),
            "errors": seen.errors,
            "wrk_errors": result.errors,
            "bad_statuses": result.bad_statuses,
            "socket_errors": result.socket_errors,
            "error_seconds": seen.error_seconds,
            "recovered_s": None if seen.recovered_s is None else round(seen.recovered_s, 1),
            "unhealthy": sorted(seen.problems),
            "rps": round(result.rps, 1),
            "p99_ms": result.p99_ms,
            "load_average": machine()["load_average_1_5_15"],
            # Seconds after the kill: errors per second (every client), and what the health
            # watch found unhealthy in each of its samples (for reading a slow recovery).
            "errors_by_second": {
                round(at - killed_at): n
                for at, n in sorted(with_clients.items())
                if n and at >= killed_at - 1
            },
            "health": [
                (round(at - killed_at, 1), sorted(problems))
                for at, problems in watch.samples
                if at >= killed_at - 1
            ],
        }
        events.append(event)
        print(
            f"chaos {name}: {event['errors']} errors over {seen.error_seconds:.0f} s, "
            f"recovered in {event['recovered_s']} s {note}"
        )
    rows = [
        (
            e["target"],
            e["errors"],
            e["error_seconds"],
            e["recovered_s"],
            verdict(e["recovered_s"] is not None and e["recovered_s"] < RECOVERY_TARGET_S),
            ", ".join(e["unhealthy"]),
        )
        for e in events
    ]
    print("\nChaos (SIGKILL under load):")
    print(table(["killed", "errors", "error s", "recovered s", "< 30 s", "unhealthy"], rows))
    return events


def print_consistency(out: dict[str, Any]) -> None:
    jobs, orders, parity = out["jobs"], out["orders"], out["agent_parity"]
    print("\nConsistency (journal):")
    print(
        f"  jobs: {jobs['submitted']} submitted, statuses {jobs['statuses']}, "
        f"lost {len(jobs['lost'])}, stuck {len(jobs['stuck'])}, doubled "
        f"{len(jobs['rows_twice']) + len(jobs['accepted_twice'])}, retried {jobs['retried']}"
    )
    print(
        f"  orders: {orders['orders']} ({orders['distinct_client_ids']} distinct client ids), "
        f"fills {orders['fills']}, filled twice {orders['orders_filled_twice']}, "
        f"overfilled {orders['orders_overfilled']}"
    )
    print(
        f"  agent: bar {parity['bar']}, {parity['agent_trades']} trades, undisturbed replay "
        f"{parity['replay_trades']}: {'identical' if parity['ok'] else parity['mismatches']}"
    )


def _passed(out: dict[str, Any]) -> bool:
    f = out["load"]
    dp99 = f["decision_p99_ms"]
    ok = (
        f["rps"] >= TARGETS["rps"]
        and f["p95_ms"] < TARGETS["p95_ms"]
        and f["p99_ms"] < TARGETS["p99_ms"]
        and f["errors"] == 0
        and dp99 is not None
        and dp99 < TARGETS["decision_p99_ms"]
    )
    ok = ok and load.jobs_ok(out["jobs"]) and load.orders_ok(out["orders"])
    ok = ok and out["agent_parity"]["ok"]
    for event in out.get("chaos", []):
        ok = ok and event["recovered_s"] is not None and event["recovered_s"] < RECOVERY_TARGET_S
    return ok


if __name__ == "__main__":
    sys.exit(main())
