"""Sections of what a process runs on: logging, the journal's database, Redis and how many
processes a pool may start; and where tuning studies are stored."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from ffe.config.base import Section


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    json_format: bool = Field(False, alias="json")


class DatabaseSettings(Section):
    url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql://user:pw@host/db; none = the SQLite "
        "file ffe.db in data.dir",
    )
    pool_size: int = Field(5, ge=1, description="PostgreSQL: connections kept open")
    max_overflow: int = Field(10, ge=0, description="PostgreSQL: extra connections under load")
    pool_timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    pool_recycle: int = Field(1800, ge=-1, description="seconds before a connection is renewed")
    pgbouncer: bool = Field(
        False,
        description="PgBouncer in transaction mode: no statement cache, uniquely named "
        "prepared statements (the pool_* settings still apply)",
    )
    busy_timeout_ms: int = Field(5000, ge=0, description="SQLite: wait this long for a lock")
    auto_upgrade: Literal["sqlite", "always", "never"] = Field(
        "sqlite", description="migrate an out-of-date schema on first use (default: SQLite only)"
    )
    backup_dir: Path | None = Field(None, description="none = backups/ in data.dir")
    backup_keep: int = Field(7, ge=1, description="backups kept by `ffe backup`")
    listen_url: SecretStr | None = Field(
        None,
        description="PostgreSQL: a direct connection (not through PgBouncer) that workers "
        "LISTEN on to wake when a job is submitted; none = the journal's url, unless pgbouncer",
    )


class RedisSettings(Section):
    url: SecretStr | None = Field(
        None,
        description="redis://HOST:6379/0 for a shared cache, rate limits and live fan-out "
        "across workers; none = in process",
    )
    key_prefix: str = Field(
        "ffe:",
        min_length=1,
        max_length=64,
        description="begins every key and pub/sub channel: deployments sharing one Redis "
        "each take their own (pub/sub channels ignore the database number)",
    )


class ComputeSettings(Section):
    """Where the parallel work of a request or a command runs, and how many processes it may
    use."""

    max_workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="processes any one pool may start (a sweep, a walk-forward run, the "
        "ensemble's forecasts, a forecast benchmark); none = the machine's cores",
    )
    executor: Literal["local", "ray"] = Field(
        "local",
        description="where sweeps, walk-forward segments and forecast benchmarks run: `local` "
        "(a process pool on this machine) or `ray` (the Ray cluster at compute.ray_address)",
    )
    ray_address: str | None = Field(
        None,
        description="the Ray cluster for executor=ray: its head's host:port (`ray start --head "
        "--port=PORT`) or ray://host:10001; every node needs this version of ffe installed",
    )


class TuneSettings(Section):
    """Hyperparameter studies (`ffe tune`, POST /api/v1/tune): where they are stored, and
    how large the API lets one be."""

    storage_url: SecretStr | None = Field(
        None,
        description="Optuna's study storage, an SQLAlchemy URL with a synchronous driver "
        "(sqlite:///..., postgresql+psycopg://...); none = the schema ffe_tune of a PostgreSQL "
        "database.url, else the SQLite file tune.db in data.dir",
    )
    batch_size: int = Field(
        8, ge=1, le=256, description="trials asked for, and scored in parallel, at a time"
    )
    max_trials: int = Field(
        500, ge=1, le=100_000, description="the most trials one study submitted to the API runs"
    )
