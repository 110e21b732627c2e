"""The bare-metal stack under a short load with one chaos event (issue 18): a worker is
SIGKILLed while it runs a job, and the stack must heal (every process healthy again within
30 s, client errors stopped) and the journal stay consistent (no job lost or doubled, no
order doubled). Latency is the bench's business (bench/bench_stack.py), not this test's.

The load, the clients and the journal checks are bench/stack/load.py's, shared with the bench.
FFE_TEST_STACK_PORT_BASE, when set, pins the stack's port base (else the first free one).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from types import ModuleType

import pytest
from tests.support.stack import ROOT, Stack, free_port_base, require_stack, stack_folder

pytestmark = [pytest.mark.serial, pytest.mark.slow]


def _bench_load() -> ModuleType:
    """bench/stack/load.py, loaded from its file (bench/ is not on the tests' path)."""
    name = "ffe_bench_stack_load"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "stack" / "load.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


load = _bench_load()

API_PROCESSES = 2
LOAD_S = 20
RECOVERY_S = 30
# A sweep long enough to be caught running (a few seconds of one worker), short enough to
# run again after its worker died (the job is queued again once its heartbeat is stale).
MEDIUM_SWEEP = {**load.SMALL_SWEEP, "grid": {"fast": list(range(2, 12)), "slow": [50, 100, 150]}}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_stack()
    folder = stack_folder()
    pinned = os.environ.get("FFE_TEST_STACK_PORT_BASE")
    base = int(pinned) if pinned else free_port_base(API_PROCESSES)
    made = Stack(
        folder,
        port_base=base,
        api_processes=API_PROCESSES,
        agent_speed=5,
        agent_params={"window": "60"},  # trades within seconds: orders to check
    )
    try:
        made.up(timeout=240)
        yield made
    finally:
        made.down()
        shutil.rmtree(folder, ignore_errors=True)


def test_worker_when_killed_mid_job_under_load_then_it_heals_and_no_job_is_lost_or_doubled(
    stack: Stack,
) -> None:
    keys = load.make_keys(stack, 10)
    load.warm_keys(stack, keys)
    status, _, body = stack.request(
        "POST", "/api/v1/sweeps", key=stack.admin_key, body=MEDIUM_SWEEP
    )
    assert status == 202, body
    first = json.loads(body)["id"]
    submitter = load.Submitter(stack, interval_s=2.0).start()
    watch = load.HealthWatch(stack).start()
    prober = load.Prober(stack).start()
    subscribers = load.Subscribers(stack, 3).start()
    try:
        # Moderate: 8 connections at 10 requests a second each.
        wrk = load.Wrk(stack.urls.lb, keys, stack.dir, duration_s=LOAD_S, connections=8, rate=10)
        found = None
        deadline = time.monotonic() + 15
        while found is None and time.monotonic() < deadline:
            found = load.running_job_worker(stack)
            time.sleep(0.2)
        assert found is not None, "no job was running on a worker to kill"
        _, worker = found
        killed_at = time.time()
        old = stack.kill(worker, signal.SIGKILL)
        result = wrk.result()
        stack.wait_healthy([worker], timeout=RECOVERY_S)
        time.sleep(2)  # a few more health samples and probes after recovery
    finally:
        for client in (submitter, watch, prober, subscribers):
            client.stop()

    timeline = load.merge_seconds(
        result.bad_by_second, dict(prober.bad), {int(t): 1 for t in submitter.failed_at}
    )
    seen = load.disruption(worker, killed_at, time.time(), timeline, watch)
    assert stack.pid(worker) not in (0, old)
    assert seen.recovered_s is not None
    assert seen.recovered_s < RECOVERY_S, seen
    # Errors (if any) stopped once it was healthy again.
    why = {
        "wrk_statuses": result.bad_statuses,
        "wrk_sockets": result.socket_errors,
        "wrk_bad": result.bad_by_second,
        "prober_bad": dict(prober.bad),
        "submitter_failed": [int(t) for t in submitter.failed_at],
    }
    assert seen.last_error is None or seen.last_error <= seen.healthy_at, (seen, why)
    assert result.requests > 0
    assert subscribers.received > 0
    jobs = load.jobs_report(stack, [first, *submitter.ids], wait_s=240)
    assert load.jobs_ok(jobs), json.dumps(jobs)
    assert jobs["statuses"] == {"finished": len(submitter.ids) + 1}, jobs
    orders = load.orders_report(stack)
    assert load.orders_ok(orders), json.dumps(orders)


def test_stack_when_down_after_chaos_then_no_process_of_it_is_left(stack: Stack) -> None:
    stack.down()

    assert stack.our_pids() == []
    assert stack.supervisord_pid() is None
