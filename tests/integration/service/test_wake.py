"""Waking a worker on submit: PostgreSQL's NOTIFY reaches a worker LISTENing on another
connection, a Redis message one on another bus, both well under a second; no LISTEN through
PgBouncer (a log line says what to set); the poll is short only when nothing can wake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import pytest

from ffe import bootstrap
from ffe.bootstrap import WakeOptions
from ffe.config import Settings, load_settings
from ffe.service.jobs.queue import JOBS_CHANNEL, JobQueue
from ffe.service.jobs.wake import (
    POLL_NOTIFIED_S,
    POLL_S,
    listen_postgres,
    listen_redis,
    listen_url,
    poll_interval,
)
from ffe.store import migrate
from ffe.store.database import Database


def _wake(settings: Settings) -> WakeOptions:
    return bootstrap.worker_options(settings).wake


async def _rung_within(doorbell: asyncio.Event, timeout_s: float) -> float:
    started = time.monotonic()
    await asyncio.wait_for(doorbell.wait(), timeout_s)
    return time.monotonic() - started


async def _until_rung(doorbell: asyncio.Event, ring: Callable[[], Awaitable[None]]) -> None:
    """Ring until the listener hears it (its subscription is live), then clear the bell."""
    deadline = time.monotonic() + 10
    while not doorbell.is_set():
        assert time.monotonic() < deadline, "the listener never heard a message"
        await ring()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(doorbell.wait(), 0.1)
    doorbell.clear()


async def test_listen_postgres_when_job_submitted_elsewhere_then_woken_at_once(postgres_url):
    submitter = Database(postgres_url)
    await migrate.upgrade(submitter)
    doorbell, listening = asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(listen_postgres(postgres_url, doorbell, listening))
    try:
        await asyncio.wait_for(listening.wait(), 10)
        doorbell.clear()  # rung once on connecting, for jobs submitted before
        await asyncio.sleep(0.2)
        assert not doorbell.is_set()

        submitting = asyncio.create_task(
            JobQueue(submitter, bootstrap.queue_policy(load_settings())).submit("sweep", {})
        )
        took = await _rung_within(doorbell, 5.0)
        await submitting
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await submitter.dispose()

    assert took < 1.0


async def test_listen_redis_when_job_submitted_by_another_process_then_woken_at_once(db, redis_url):
    from ffe.kv import make_backends

    here, there = make_backends(redis_url), make_backends(redis_url)  # two processes' buses
    doorbell = asyncio.Event()
    listener = asyncio.create_task(listen_redis(here.bus, doorbell))
    try:
        await _until_rung(doorbell, lambda: there.bus.publish(JOBS_CHANNEL, {"ids": []}))
        submitting = asyncio.create_task(
            JobQueue(db, bootstrap.queue_policy(load_settings()), there.bus).submit("sweep", {})
        )
        took = await _rung_within(doorbell, 5.0)
        await submitting
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await here.close()
        await there.close()

    assert took < 1.0


def test_listen_url_when_behind_pgbouncer_then_none_and_a_log_line_says_what_to_set(caplog):
    journal = "postgresql://ffe:secret@bouncer:6432/ffe"
    behind = load_settings(database={"url": journal, "pgbouncer": True})
    direct = load_settings(
        database={"url": journal, "pgbouncer": True, "listen_url": "postgres://ffe@db:5432/ffe"}
    )

    with caplog.at_level(logging.WARNING, logger="ffe.service.jobs.wake"):
        assert listen_url(_wake(behind)) is None

    assert "set database.listen_url" in caplog.text
    assert "secret" not in caplog.text
    assert listen_url(_wake(direct)) == "postgresql://ffe@db:5432/ffe"


def test_listen_url_when_journal_is_postgres_then_its_url_and_when_sqlite_then_none():
    on_postgres = load_settings(database={"url": "postgresql+asyncpg://ffe@db/ffe"})

    assert listen_url(_wake(on_postgres)) == "postgresql://ffe@db/ffe"
    assert listen_url(_wake(load_settings())) is None  # SQLite in data.dir


@pytest.mark.parametrize(
    ("poll_s", "notified", "expected"),
    [(None, False, POLL_S), (None, True, POLL_NOTIFIED_S), (2.5, False, 2.5)],
)
def test_poll_interval_when_nothing_can_wake_then_short(poll_s, notified, expected):
    settings = load_settings(jobs={"poll_s": poll_s})

    assert poll_interval(_wake(settings), notified=notified) == expected
