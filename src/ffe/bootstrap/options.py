"""What the API, the job queue, the workers and the pre-compute are handed instead of the
settings: small frozen values, read once from ``Settings`` here, in the composition root.

Each names only what its receiver uses, so a reader of ``Services`` or ``Worker`` sees what
they depend on, and a test builds them through ``bootstrap`` (never with defaults of their
own: the settings' defaults are the only ones). All of them pickle: a job's process gets them
with its work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from ffe.config import Settings


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """The API's limits, sessions and edges (``api.*``), and what it shows of the agent."""

    environment: str  # development or production
    secret_key: SecretStr | None = field(repr=False)
    data_dir: Path  # where a development session key is kept; the disk probe's folder
    session_ttl_s: int
    cors_origins: tuple[str, ...]
    rate_limit: int
    login_rate_limit: int
    max_body_bytes: int
    trusted_proxies: tuple[str, ...]
    auth_failures_limit: int
    auth_failures_window_s: float
    login_failures_free: int
    login_backoff_max_s: float
    hash_threads: int
    max_jobs: int  # jobs this process runs at once when it runs jobs
    run_jobs: bool  # jobs.in_api: this process runs jobs too
    otel_endpoint: str | None
    account: str  # agent.account: the account shown when a request names none
    broker: str  # agent.broker: paper, ccxt, oanda or kalshi
    list_cache_s: float = 1.0  # how old a polled answer (lists, portfolio) may be served
    ready_cache_s: float = 1.0  # how old a readiness report may be served

    @property
    def production(self) -> bool:
        """Whether this is a production deployment (secure cookies, a real secret key)."""
        return self.environment == "production"

    @property
    def mode(self) -> str:
        """paper, or live for any venue."""
        return "paper" if self.broker == "paper" else "live"


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """When the job queue takes a job or worker for dead, and how often it retries a job."""

    stale_s: float
    max_attempts: int


@dataclass(frozen=True, slots=True)
class WakeOptions:
    """What ``service.jobs.wake`` needs to choose how workers hear of a submitted job."""

    journal_url: SecretStr
    listen_url: SecretStr | None  # database.listen_url, as configured
    pgbouncer: bool
    redis: bool  # redis.url is set
    poll_s: float | None  # jobs.poll_s, as configured


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a job worker runs its jobs (``jobs.*``)."""

    concurrency: int  # for ``ffe worker``; an API's own worker runs ``ApiOptions.max_jobs``
    nice: int
    heartbeat_s: float
    drain_s: float
    time_limits_s: dict[str, float]  # by job kind
    health_host: str
    health_port: int
    wake: WakeOptions

    def time_limit_s(self, kind: str) -> float:
        """Seconds a job of ``kind`` may run (``jobs.time_limit_s.<kind>``)."""
        return self.time_limits_s[kind]


@dataclass(frozen=True, slots=True)
class PrecomputeOptions:
    """The analysis schedule (``precompute.*``)."""

    symbols: tuple[str, ...]
    interval_s: float
    in_api: bool
    health_host: str
    health_port: int


def api_options(settings: Settings) -> ApiOptions:
    """The ``api`` settings the API uses, with the agent's account and broker."""
    api = settings.api
    return ApiOptions(
        environment=api.environment,
        secret_key=api.secret_key,
        data_dir=settings.data.dir,
        session_ttl_s=api.session_ttl_s,
        cors_origins=tuple(api.cors_origins),
        rate_limit=api.rate_limit,
        login_rate_limit=api.login_rate_limit,
        max_body_bytes=api.max_body_bytes,
        trusted_proxies=tuple(api.trusted_proxies),
        auth_failures_limit=api.auth_failures_limit,
        auth_failures_window_s=api.auth_failures_window_s,
        login_failures_free=api.login_failures_free,
        login_backoff_max_s=api.login_backoff_max_s,
        hash_threads=api.hash_threads,
        max_jobs=api.max_jobs,
        run_jobs=settings.jobs.in_api,
        otel_endpoint=api.otel_endpoint,
        account=settings.agent.account,
        broker=settings.agent.broker,
        list_cache_s=api.list_cache_s,
        ready_cache_s=api.ready_cache_s,
    )


def queue_policy(settings: Settings) -> QueuePolicy:
    """The ``jobs`` settings the queue uses."""
    return QueuePolicy(stale_s=settings.jobs.stale_s, max_attempts=settings.jobs.max_attempts)


def worker_options(settings: Settings) -> WorkerOptions:
    """The ``jobs`` settings a worker uses, and what wakes it."""
    jobs = settings.jobs
    listen = settings.database.listen_url
    return WorkerOptions(
        concurrency=jobs.concurrency,
        nice=jobs.nice,
        heartbeat_s=jobs.heartbeat_s,
        drain_s=jobs.drain_s,
        time_limits_s={kind: float(limit) for kind, limit in jobs.time_limit_s},
        health_host=jobs.health_host,
        health_port=jobs.health_port,
        wake=WakeOptions(
            journal_url=SecretStr(settings.database_url()),
            listen_url=listen,
            pgbouncer=settings.database.pgbouncer,
            redis=bool(settings.redis.url and settings.redis.url.get_secret_value().strip()),
            poll_s=jobs.poll_s,
        ),
    )


def precompute_options(settings: Settings) -> PrecomputeOptions:
    """The ``precompute`` settings."""
    chosen = settings.precompute
    return PrecomputeOptions(
        symbols=tuple(chosen.symbols),
        interval_s=chosen.interval_s,
        in_api=chosen.in_api,
        health_host=chosen.health_host,
        health_port=chosen.health_port,
    )


@dataclass(frozen=True, slots=True)
class TuneOptions:
    """Where studies are stored and how they are sized (``tune.*``, resolved)."""

    storage_url: str = field(repr=False)  # SQLAlchemy, a synchronous driver; may hold a password
    batch_size: int
    max_trials: int  # the most trials one study submitted to the API may ask for


TUNE_SCHEMA = "ffe_tune"  # Optuna's tables in a PostgreSQL journal's database


def tune_options(settings: Settings) -> TuneOptions:
    """Where studies live: ``tune.storage_url``; else beside a PostgreSQL journal in a schema
    of their own (Optuna keeps an ``alembic_version`` table, as the journal does), through
    psycopg (Optuna's storage is synchronous); else the SQLite file ``tune.db`` in the data
    directory."""
    tune = settings.tune
    if tune.storage_url is not None:
        url = tune.storage_url.get_secret_value()
    else:
        url = _storage_beside(settings.database_url(), settings.data.dir)
    return TuneOptions(url, tune.batch_size, tune.max_trials)


def _storage_beside(journal_url: str, data_dir: Path) -> str:
    from sqlalchemy.engine import make_url

    journal = make_url(journal_url)
    if journal.get_backend_name() == "postgresql":
        options = f"-csearch_path={TUNE_SCHEMA}"
        url = journal.set(drivername="postgresql+psycopg").update_query_dict({"options": options})
        return url.render_as_string(hide_password=False)
    return f"sqlite:///{(data_dir / 'tune.db').as_posix()}"
