"""Health checks: concurrent probes under timeouts, the verdict, and the built-in probes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from ffe.obs.health import (
    CheckResult,
    DependencyScrape,
    HealthChecks,
    HealthReport,
    disk_probe,
    heartbeat_probe,
    memory_probe,
    ping_probe,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def returning(detail: str):
    async def probe() -> str:
        return detail

    return probe


def raising(exc: Exception):
    async def probe() -> str:
        raise exc

    return probe


def by_name(report: HealthReport) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


async def test_run_when_all_probes_pass_then_ok_with_details():
    checks = HealthChecks()
    checks.add("db", returning("sqlite reachable"))
    checks.add("cache", returning("redis reachable"), critical=False)

    report = await checks.run()

    assert report.ok
    assert report.as_dict() == {
        "status": "ok",
        "checks": {
            "db": {
                "ok": True,
                "detail": "sqlite reachable",
                "latency_ms": pytest.approx(by_name(report)["db"].latency_ms, abs=1e-3),
                "critical": True,
            },
            "cache": {
                "ok": True,
                "detail": "redis reachable",
                "latency_ms": pytest.approx(by_name(report)["cache"].latency_ms, abs=1e-3),
                "critical": False,
            },
        },
    }


async def test_run_when_no_checks_then_ok():
    report = await HealthChecks().run()

    assert report.ok
    assert report.as_dict() == {"status": "ok", "checks": {}}


async def test_run_when_only_noncritical_fails_then_degraded_but_ok():
    checks = HealthChecks()
    checks.add("db", returning("up"))
    checks.add("cache", raising(ConnectionError("refused")), critical=False)

    report = await checks.run()

    assert report.ok
    assert report.status == "degraded"
    assert report.as_dict()["status"] == "degraded"


async def test_run_when_critical_fails_then_fail_with_type_and_message():
    checks = HealthChecks()
    checks.add("db", raising(ConnectionError("refused")))
    checks.add("cache", returning("up"), critical=False)

    report = await checks.run()

    assert not report.ok
    assert report.status == "fail"
    db = by_name(report)["db"]
    assert (db.ok, db.detail, db.critical) == (False, "ConnectionError: refused", True)


async def test_run_when_probe_hangs_then_check_fails_with_timeout():
    cancelled = asyncio.Event()

    async def hung() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    checks = HealthChecks()
    checks.add("broker", hung, timeout_s=0.05)
    checks.add("db", returning("up"))
    started = time.perf_counter()

    report = await checks.run()

    assert time.perf_counter() - started < 1.0
    broker = by_name(report)["broker"]
    assert (broker.ok, broker.detail) == (False, "timed out after 0.05s")
    assert by_name(report)["db"].ok
    await asyncio.wait_for(cancelled.wait(), timeout=1.0)


async def test_run_when_probe_ignores_cancellation_then_still_returns_on_time():
    release = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # swallows the cancel and keeps going
        return "late"

    checks = HealthChecks()
    checks.add("stubborn", stubborn, timeout_s=0.05)

    report = await asyncio.wait_for(checks.run(), timeout=2.0)

    assert by_name(report)["stubborn"].detail == "timed out after 0.05s"
    release.set()


async def test_run_when_probes_wait_for_each_other_then_they_run_concurrently():
    a_started, b_started = asyncio.Event(), asyncio.Event()

    def meets(mine: asyncio.Event, other: asyncio.Event):
        async def probe() -> str:
            mine.set()
            await other.wait()
            return "met"

        return probe

    checks = HealthChecks()
    checks.add("a", meets(a_started, b_started), timeout_s=2.0)
    checks.add("b", meets(b_started, a_started), timeout_s=2.0)

    report = await checks.run()

    assert [c.detail for c in report.checks] == ["met", "met"]


async def test_run_when_probe_raises_before_awaiting_then_failed_check():
    def broken():
        raise RuntimeError("misconfigured")

    checks = HealthChecks()
    checks.add("broken", broken)

    report = await checks.run()

    assert by_name(report)["broken"].detail == "RuntimeError: misconfigured"


async def test_run_when_detail_has_url_password_then_masked():
    checks = HealthChecks()
    checks.add("db", raising(OSError("cannot reach postgresql://ffe:hunter2@db:5432/ffe")))

    report = await checks.run()

    detail = by_name(report)["db"].detail
    assert "hunter2" not in detail
    assert "postgresql://ffe:***@db:5432/ffe" in detail


def test_add_when_name_taken_then_value_error():
    checks = HealthChecks()
    checks.add("db", returning("up"))

    with pytest.raises(ValueError, match="'db' is already added"):
        checks.add("db", returning("up"))


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("nan")])
def test_add_when_timeout_not_positive_then_value_error(timeout_s):
    with pytest.raises(ValueError, match="must be positive"):
        HealthChecks().add("db", returning("up"), timeout_s=timeout_s)


async def test_disk_probe_when_enough_free_then_detail_says_free_and_where(tmp_path):
    assert f"free at {tmp_path}" in await disk_probe(tmp_path, min_free_bytes=0)()


async def test_disk_probe_when_below_minimum_then_fails_saying_free_and_where(tmp_path):
    checks = HealthChecks()
    checks.add("disk", disk_probe(tmp_path, min_free_bytes=2**62))

    report = await checks.run()

    disk = by_name(report)["disk"]
    assert not disk.ok
    assert disk.detail.startswith("only ")
    assert disk.detail.endswith(f"free at {tmp_path}, below the minimum of 4194304.0 TiB")


async def test_memory_probe_when_under_limit_then_reports_use():
    assert "% used" in await memory_probe(max_percent=100.0)()


async def test_memory_probe_when_over_limit_then_fails():
    checks = HealthChecks()
    checks.add("memory", memory_probe(max_percent=-1.0))

    report = await checks.run()

    assert "above the maximum of -1%" in by_name(report)["memory"].detail


def heartbeat_at(seen: datetime | None, max_age_s: float = 60.0):
    async def last_seen() -> datetime | None:
        return seen

    return heartbeat_probe(last_seen, max_age_s, now=lambda: NOW)


async def test_heartbeat_probe_when_recent_then_ok_with_age():
    assert await heartbeat_at(NOW - timedelta(seconds=10))() == "last heartbeat 10s ago"


async def test_heartbeat_probe_when_naive_time_then_taken_as_utc():
    naive = (NOW - timedelta(seconds=5)).replace(tzinfo=None)

    assert await heartbeat_at(naive)() == "last heartbeat 5s ago"


@pytest.mark.parametrize(
    ("seen", "detail"),
    [
        (NOW - timedelta(seconds=125), "last heartbeat 125s ago, older than the maximum of 60s"),
        (None, "no heartbeat recorded yet"),
    ],
)
async def test_heartbeat_probe_when_stale_or_missing_then_fails(seen, detail):
    checks = HealthChecks()
    checks.add("agent", heartbeat_at(seen))

    report = await checks.run()

    assert (by_name(report)["agent"].ok, by_name(report)["agent"].detail) == (False, detail)


async def test_ping_probe_when_ping_succeeds_then_reachable():
    async def ping() -> bool:
        return True

    assert await ping_probe(ping, "redis")() == "redis reachable"


async def test_ping_probe_when_ping_raises_then_message_is_detail():
    async def ping() -> None:
        raise ConnectionRefusedError("connection refused on 127.0.0.1:6379")

    checks = HealthChecks()
    checks.add("redis", ping_probe(ping, "redis"), critical=False)

    report = await checks.run()

    redis = by_name(report)["redis"]
    assert redis.detail == "redis: ConnectionRefusedError: connection refused on 127.0.0.1:6379"
    assert report.status == "degraded"


# -- DependencyScrape: ffe_dependency_up kept current for scrapes ------------------------------


def _dependency_checks(probe, timeout_s: float = 2.0) -> tuple[HealthChecks, list[str]]:
    checks, ran = HealthChecks(), []

    async def disk() -> str:  # no dependency: never run for a scrape
        ran.append("disk")
        return "free"

    async def counted() -> str:
        ran.append("database")
        return await probe()

    checks.add("database", counted, timeout_s=timeout_s, dependency="database")
    checks.add("disk", disk)
    return checks, ran


async def test_dependency_scrape_when_stale_then_runs_only_dependency_checks_and_records() -> None:
    checks, ran = _dependency_checks(returning("sqlite"))
    recorded: list[tuple[CheckResult, ...]] = []
    scrape = DependencyScrape(checks, recorded.append, max_age_s=60.0)

    await scrape.refresh()
    await scrape.refresh()  # fresh: not run again

    assert ran == ["database"]
    assert [(r.name, r.ok, r.dependency) for r in recorded[0]] == [("database", True, "database")]
    assert len(recorded) == 1


async def test_dependency_scrape_when_readiness_just_ran_then_not_run_again() -> None:
    checks, ran = _dependency_checks(returning("sqlite"))
    recorded: list[tuple[CheckResult, ...]] = []
    scrape = DependencyScrape(checks, recorded.append, max_age_s=60.0)

    scrape.recorded(await checks.run())  # /health/ready
    await scrape.refresh()

    assert sorted(ran) == ["database", "disk"]  # once, by the readiness check
    assert len(recorded) == 1


async def test_dependency_scrape_when_scrapes_overlap_then_one_run_in_flight() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.2)
        return "slow"

    checks, ran = _dependency_checks(slow)
    recorded: list[tuple[CheckResult, ...]] = []
    scrape = DependencyScrape(checks, recorded.append, max_age_s=0.0)

    await asyncio.gather(*(scrape.refresh() for _ in range(5)))

    assert ran == ["database"]
    assert len(recorded) == 1


async def test_dependency_scrape_when_probe_hangs_then_scrape_waits_at_most_its_timeout() -> None:
    async def hung() -> str:
        await asyncio.sleep(3600)
        return "never"

    checks, _ = _dependency_checks(hung, timeout_s=0.2)
    recorded: list[tuple[CheckResult, ...]] = []
    scrape = DependencyScrape(checks, recorded.append, max_age_s=0.0)

    started = time.perf_counter()
    await scrape.refresh()
    spent = time.perf_counter() - started

    assert spent < 1.0
    assert [(r.ok, r.detail) for r in recorded[0]] == [(False, "timed out after 0.2s")]


async def test_latest_shares_one_run_between_callers_and_keeps_it_max_age():
    runs = 0
    release = asyncio.Event()

    async def probe() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return f"run {runs}"

    checks = HealthChecks()
    checks.add("database", probe, dependency="database")
    waiting = [asyncio.ensure_future(checks.latest(10.0)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    reports = await asyncio.gather(*waiting)
    assert runs == 1  # five callers, one run of the checks
    assert {by_name(r)["database"].detail for r in reports} == {"run 1"}
    assert by_name(await checks.latest(10.0))["database"].detail == "run 1"  # still fresh
    assert by_name(await checks.latest(0.0))["database"].detail == "run 2"  # too old for 0 s
    assert runs == 2


async def test_latest_run_goes_on_when_its_first_caller_gives_up():
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "ok"

    checks = HealthChecks()
    checks.add("database", probe)
    first = asyncio.ensure_future(checks.latest(10.0))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(checks.latest(10.0))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    report = await second
    assert report.ok
    assert first.cancelled()
