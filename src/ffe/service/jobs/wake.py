"""Waking a worker when a job is submitted, instead of leaving the job until its next look.

Each carrier rings the queue's doorbell (``JobQueue.doorbell``), and the worker claims at once:

- in the same process (``ffe run``, an API running jobs), ``JobQueue.submit`` rings it itself;
- with Redis (``redis.url``), submissions are published on the kv bus's ``jobs`` channel and
  ``listen_redis`` hears them;
- with a PostgreSQL journal, ``JobQueue.submit`` sends ``NOTIFY ffe_jobs`` in the transaction
  that queues the job, and ``listen_postgres`` LISTENs on a connection of its own. LISTEN needs
  a session that lasts, which PgBouncer in transaction mode does not keep: that connection goes
  straight to PostgreSQL, to ``database.listen_url`` (by default the journal's URL, unless
  ``database.pgbouncer`` says the journal is behind PgBouncer; then there is none).

None of them keeps a message for a worker that was not listening (a restart, an outage), so a
worker also looks every ``jobs.poll_s`` (``poll_interval``): often when nothing can wake it
(several processes on SQLite without Redis), every few seconds when something can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any

from ffe.service.jobs.queue import JOBS_CHANNEL, NOTIFY_CHANNEL

if TYPE_CHECKING:
    from ffe.bootstrap import WakeOptions
    from ffe.kv import EventBus

log = logging.getLogger(__name__)

POLL_S = 0.1  # between looks when nothing can wake a worker
POLL_NOTIFIED_S = 5.0  # when Redis or PostgreSQL can
RETRY_S = (1.0, 30.0)  # a lost LISTEN connection is tried again after 1 s, doubling to 30 s
CHECK_S = 30.0  # a LISTEN connection is checked this often (a silent network drop)


def listen_url(wake: WakeOptions) -> str | None:
    """The PostgreSQL URL to LISTEN on for new jobs, or None: a SQLite journal, or one behind
    PgBouncer without ``database.listen_url`` (logged, with what to set)."""
    if wake.listen_url is not None:
        url = wake.listen_url.get_secret_value()
    else:
        url = wake.journal_url.get_secret_value()
        if not url.startswith("postgres"):
            return None
        if wake.pgbouncer:
            log.warning(
                "database.pgbouncer is set and database.listen_url is not: workers cannot "
                "LISTEN through PgBouncer, so they look for jobs every %g s instead of being "
                "woken at once; set database.listen_url (FFE__DATABASE__LISTEN_URL) to a "
                "direct PostgreSQL URL for prompt pick-up",
                poll_interval(wake, notified=wake.redis),
            )
            return None
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url.strip())


def poll_interval(wake: WakeOptions, *, notified: bool) -> float:
    """Seconds between a worker's looks for queued jobs: ``jobs.poll_s``, else short when
    nothing can wake it (``notified`` False) and longer when something can."""
    if wake.poll_s is not None:
        return wake.poll_s
    return POLL_NOTIFIED_S if notified else POLL_S


async def listen_redis(
    bus: EventBus, doorbell: asyncio.Event, listening: asyncio.Event | None = None
) -> None:
    """Ring ``doorbell`` at each submission announced on the kv bus (until cancelled), and
    once when subscribed, for jobs submitted before. The bus itself subscribes again after a
    Redis outage. ``listening`` is set once subscribed."""
    async with bus.subscribe(JOBS_CHANNEL) as submitted:
        if listening is not None:
            listening.set()
        doorbell.set()
        async for _ in submitted:
            doorbell.set()


async def listen_postgres(
    url: str, doorbell: asyncio.Event, listening: asyncio.Event | None = None
) -> None:
    """LISTEN on ``url`` and ring ``doorbell`` at each notification (until cancelled); after
    each (re)connection ring it once too, for jobs submitted while nobody listened.
    ``listening`` is set while the LISTEN is in place."""
    delay, failing = RETRY_S[0], False
    while True:
        try:
            await _listen_once(url, doorbell, listening, recovered=failing)
            failing = False
        except (OSError, TimeoutError, _postgres_errors()) as exc:
            if not failing:
                log.warning(
                    "cannot LISTEN for new jobs on PostgreSQL (%s: %s); looking for them "
                    "by polling meanwhile, and trying again",
                    type(exc).__name__,
                    exc,
                )
            failing = True
        finally:
            if listening is not None:
                listening.clear()
        await asyncio.sleep(delay)
        delay = RETRY_S[0] if not failing else min(delay * 2, RETRY_S[1])


async def _listen_once(
    url: str, doorbell: asyncio.Event, listening: asyncio.Event | None, *, recovered: bool
) -> None:
    """One LISTEN connection, until it is lost."""
    import asyncpg

    connection = await asyncpg.connect(url, timeout=10)
    lost = asyncio.Event()
    try:
        connection.add_termination_listener(lambda *_: lost.set())
        await connection.add_listener(NOTIFY_CHANNEL, lambda *_: doorbell.set())
        if recovered:
            log.warning("listening for new jobs on PostgreSQL again")
        if listening is not None:
            listening.set()
        doorbell.set()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), CHECK_S)
            if not lost.is_set():
                await connection.fetchval("SELECT 1", timeout=10)
    finally:
        with contextlib.suppress(Exception):  # it may be gone already
            await asyncio.wait_for(connection.close(), 5)


def _postgres_errors() -> Any:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError)
