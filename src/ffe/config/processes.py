"""Sections of the process types: the API (``ffe serve``, ``ffe run``), the job workers and the
analysis pre-compute."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from ffe.config.base import Section


class ApiSettings(Section):
    """The REST API, the dashboard and the main job (``ffe run``, ``ffe serve``)."""

    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 for every one")
    port: int = Field(8000, ge=1, le=65535)
    environment: Literal["development", "production"] = Field(
        "development", description="production refuses to start without a real secret_key"
    )
    secret_key: SecretStr | None = Field(
        None,
        description="signs dashboard sessions; none = a random key kept in data.dir "
        "(development only)",
    )
    first_admin_password: SecretStr | None = Field(
        None,
        description="the password `ffe run` gives the admin user it makes when there is none; "
        "unset: a random one, printed in development, written to a 0600 file in production",
    )
    session_ttl_s: int = Field(43_200, ge=60, description="dashboard login lifetime (seconds)")
    cors_origins: list[str] = Field(
        default_factory=list, description="browser origins allowed to call the API; none: closed"
    )
    rate_limit: int = Field(1200, ge=1, description="requests per key (or address) per minute")
    login_rate_limit: int = Field(10, ge=1, description="login attempts per address per minute")
    max_body_bytes: int = Field(
        2**20, ge=1024, description="largest request body; larger ones get 413 (bytes)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="seconds a client may take to send a request's headers"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or networks of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed; none: the peer is the client",
    )
    auth_failures_limit: int = Field(
        20, ge=1, description="failed authentications per address per window before 429"
    )
    auth_failures_window_s: float = Field(
        300.0, gt=0, description="the window failed authentications are counted in (seconds)"
    )
    login_failures_free: int = Field(
        3, ge=1, description="wrong passwords per address and user before each next waits"
    )
    login_backoff_max_s: float = Field(
        900.0, gt=0, description="the longest wait after wrong passwords (seconds)"
    )
    hash_threads: int = Field(
        2, ge=1, le=32, description="threads checking argon2 hashes (keys, passwords)"
    )
    list_cache_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="how old the polled answers (status, portfolio, positions, decisions, "
        "orders, fills, jobs) may be served, read from the journal at most once in this many "
        "seconds; a process's own writes are in its next answer; 0: read each time",
    )
    ready_cache_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="how old a `/health/ready` report may be served: its checks (database, "
        "Redis, disk) run at most once in this many seconds, shared by the probes meanwhile",
    )
    workers: int = Field(1, ge=1, le=64, description="`ffe serve` worker processes")
    max_jobs: int = Field(
        1,
        ge=1,
        le=32,
        description="jobs an API process runs at once when it runs jobs (`ffe run`, "
        "`ffe serve --jobs`)",
    )
    # Renamed: read as precompute.symbols and precompute.interval_s (see Settings).
    analysis_symbols: list[str] | None = Field(
        None, description="deprecated: read as precompute.symbols (which wins when both are set)"
    )
    analysis_interval_s: float | None = Field(
        None, gt=0, description="deprecated: read as precompute.interval_s"
    )
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint, e.g. http://localhost:4318/v1/traces"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def check_proxies(cls, proxies: list[str]) -> list[str]:
        import ipaddress

        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an address or network: use e.g. 10.0.0.5 or 10.0.0.0/8"
                ) from None
        return [proxy.strip() for proxy in proxies]

    @field_validator("cors_origins")
    @classmethod
    def check_origins(cls, origins: list[str]) -> list[str]:
        if "*" in origins:  # with cookies allowed, "*" would let every site act as the user
            raise ValueError("list the dashboard's origins, e.g. https://desk.example; not *")
        return origins


class JobTimeLimits(Section):
    """Seconds a job of each kind may run before it is stopped (and fails, saying so)."""

    backtest: float = Field(900.0, gt=0, description="a backtest job (POST /api/v1/backtests)")
    sweep: float = Field(1800.0, gt=0, description="a parameter sweep job (POST /api/v1/sweeps)")
    forecast_bench: float = Field(
        1800.0, gt=0, description="a forecast benchmark job (POST /api/v1/forecast/bench)"
    )
    tune: float = Field(3600.0, gt=0, description="a tuning study job (POST /api/v1/tune)")


class JobsSettings(Section):
    """Background jobs (backtests, sweeps, forecast benchmarks, tuning studies): who runs
    them, and how."""

    time_limit_s: JobTimeLimits = JobTimeLimits()
    in_api: bool = Field(
        False, description="`ffe serve` runs jobs in its own process too (`ffe run` always does)"
    )
    concurrency: int = Field(1, ge=1, le=64, description="jobs one `ffe worker` runs at once")
    max_attempts: int = Field(
        2, ge=1, le=100, description="claims of a job whose worker died before it is failed"
    )
    poll_s: float | None = Field(
        None,
        gt=0,
        le=60,
        description="seconds between looks for queued jobs; none = 0.1 when nothing can "
        "notify a worker (SQLite without Redis), 5 when Redis or PostgreSQL can",
    )
    drain_s: float = Field(
        20.0, ge=0, description="on SIGTERM, seconds a worker waits for its running jobs"
    )
    nice: int = Field(10, ge=0, le=19, description="CPU niceness added to each job's processes")
    health_port: int = Field(
        0, ge=0, le=65535, description="`ffe worker` probes and metrics port; 0 = none"
    )
    health_host: str = Field("127.0.0.1", description="address the worker's probes listen on")
    heartbeat_s: float = Field(
        5.0, gt=0, le=60, description="seconds between a worker's heartbeats (and its jobs')"
    )
    stale_s: float = Field(
        30.0, gt=0, le=3600, description="a job or worker silent this long is taken for dead"
    )

    @field_validator("stale_s")
    @classmethod
    def check_stale(cls, stale_s: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_s", 5.0)
        if stale_s < 3 * heartbeat:
            raise ValueError(
                f"jobs.stale_s must be at least 3 heartbeats ({3 * heartbeat:g} s with "
                f"jobs.heartbeat_s at {heartbeat:g}): one late beat must not end a live job"
            )
        return stale_s


class PrecomputeSettings(Section):
    """The analysis of configured symbols, refreshed on a schedule into the shared cache
    (Redis when redis.url is set, else the journal): by ``ffe precompute``, or inside the API
    where ``in_api`` is on (``ffe run`` turns it on)."""

    symbols: list[str] = Field(
        default_factory=lambda: ["SP500"], description="analysed on the schedule"
    )
    interval_s: float = Field(300.0, gt=0, description="seconds between refreshes of a symbol")
    in_api: bool = Field(
        False,
        description="the API runs the schedule itself and analyses other symbols on request "
        "(`ffe run`, `ffe serve --precompute`); off: it only reads what `ffe precompute` caches",
    )
    health_port: int = Field(
        0, ge=0, le=65535, description="`ffe precompute`'s /health and /metrics port; 0 = none"
    )
    health_host: str = Field("127.0.0.1", description="the address health_port listens on")
