"""The journal's tables, as typed SQLAlchemy 2 models.

One ``runs`` row per backtest, paper or live session; everything a run produced hangs off it
and goes when it is deleted. Instants are UTC (see ``UtcDateTime``); prices and quantities are
double precision; free-form documents (configs, stats, model votes) are JSON.

Change a model, then add a migration (``alembic revision --autogenerate`` from
``src/ffe/store``); ``tests/integration/store`` fails while the two disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ffe.store.types import BigId, Json, UtcDateTime, utc_now

# Stable constraint names, so migrations can drop and alter them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_KINDS = ("backtest", "paper", "live")
RUN_STATUSES = ("running", "finished", "failed", "interrupted")
JOB_STATUSES = ("queued", "running", "finished", "failed", "cancelled")
ROLES = ("viewer", "trader", "admin")
AGENT_STATUSES = ("running", "paused", "halted", "stopped")
# "close" closes one position (its symbol in the command's payload) through the agent's risk
# engine and approval policy.
AGENT_COMMANDS = ("pause", "resume", "stop", "emergency_stop", "reset", "close")
APPROVAL_STATUSES = ("pending", "approved", "rejected", "expired", "sent")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"{column}_valid")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _run_fk() -> Mapped[str]:
    return mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), index=True)


class Run(Base):
    """A backtest, paper or live session: what ran, on what, and what came of it."""

    __tablename__ = "runs"
    __table_args__ = (_one_of("kind", RUN_KINDS), _one_of("status", RUN_STATUSES))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    symbols: Mapped[list[str]] = mapped_column(Json, default=list)
    timeframe: Mapped[str | None] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    code_version: Mapped[str] = mapped_column(String(64))
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    stats: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)


class Decision(Base):
    """What the engine decided for one symbol at one bar, and why."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE")
    )  # indexed with id above: "the last N decisions of a run" is one index scan
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    target: Mapped[float] = mapped_column(Double)
    confidence: Mapped[float | None] = mapped_column(Double)
    rationale: Mapped[str | None] = mapped_column(Text)
    votes: Mapped[dict[str, Any] | None] = mapped_column(Json)
    inputs_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class RiskVerdict(Base):
    """The risk engine's answer to one order intent: approved (maybe resized) or denied."""

    __tablename__ = "risk_verdicts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    decision_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("decisions.id", ondelete="SET NULL"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    approved: Mapped[bool] = mapped_column(Boolean)
    requested_quantity: Mapped[float] = mapped_column(Double)
    approved_quantity: Mapped[float] = mapped_column(Double)
    check_name: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)


class Order(Base):
    """An order sent (or to be sent) to a broker. ``client_order_id`` is ours and unique, so a
    restart can tell which orders it already placed."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    broker_order_id: Mapped[str | None] = mapped_column(String(128))
    decision_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("decisions.id", ondelete="SET NULL"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[float] = mapped_column(Double)  # signed: positive buys
    order_type: Mapped[str] = mapped_column(String(16), default="market")
    limit_price: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16), default="new")
    filled_quantity: Mapped[float] = mapped_column(Double, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class Fill(Base):
    """An execution: part or all of an order, at a price, with its commission."""

    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    order_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[float] = mapped_column(Double)  # signed
    price: Mapped[float] = mapped_column(Double)
    commission: Mapped[float] = mapped_column(Double, default=0.0)


class TradeRow(Base):
    """A closed round trip (entry and exit of one lot), as the backtest reports it."""

    __tablename__ = "trades"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    symbol: Mapped[str] = mapped_column(String(64))
    entry_time: Mapped[datetime] = mapped_column(UtcDateTime)
    exit_time: Mapped[datetime] = mapped_column(UtcDateTime)
    entry_price: Mapped[float] = mapped_column(Double)
    exit_price: Mapped[float] = mapped_column(Double)
    quantity: Mapped[float] = mapped_column(Double)  # signed: negative for a short
    pnl: Mapped[float] = mapped_column(Double)
    commission: Mapped[float] = mapped_column(Double, default=0.0)


class PositionSnapshot(Base):
    """A position as it stood at one time."""

    __tablename__ = "position_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    symbol: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[float] = mapped_column(Double)
    average_price: Mapped[float | None] = mapped_column(Double)
    mark_price: Mapped[float | None] = mapped_column(Double)


class EquityPoint(Base):
    """The account's value at one bar (and, for reports, the buy-and-hold benchmark's)."""

    __tablename__ = "equity_points"
    # A run's peak equity (the drawdown's reference, read on every portfolio refresh) from
    # the index alone, instead of a scan of every point the run has journaled.
    __table_args__ = (Index("ix_equity_points_run_id_equity", "run_id", "equity"),)

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    time: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    equity: Mapped[float] = mapped_column(Double)
    cash: Mapped[float | None] = mapped_column(Double)
    benchmark: Mapped[float | None] = mapped_column(Double)


class DecisionOutcome(Base):
    """What happened after a decision, once its horizon had passed."""

    __tablename__ = "decision_outcomes"
    __table_args__ = (UniqueConstraint("decision_id", "horizon"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(BigId, ForeignKey("decisions.id", ondelete="CASCADE"))
    horizon: Mapped[int] = mapped_column(Integer)  # bars
    realized_return: Mapped[float] = mapped_column(Double)
    hit: Mapped[bool | None] = mapped_column(Boolean)
    resolved_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class Job(Base):
    """Background work (a backtest, a sweep) submitted through the API or CLI."""

    __tablename__ = "jobs"
    __table_args__ = (_one_of("status", JOB_STATUSES),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Which process runs it and when that process last said so: with several API workers, a
    # job is given up for lost only once its heartbeat is stale, not whenever a worker starts.
    owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Times it was claimed: a job whose worker died is queued again until it reaches
    # ``jobs.max_attempts``.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Worker(Base):
    """A process that runs jobs (``ffe worker``, or an API running them in process): who it
    is, when it last said it was alive, and how many jobs it has run. The API reads it to say
    when queued jobs have no worker, and ``/metrics`` to count each worker's jobs."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the owner its jobs name
    kind: Mapped[str] = mapped_column(String(16))  # worker, api, run
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    running: Mapped[int] = mapped_column(Integer, default=0)
    finished: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)


class CacheEntry(Base):
    """A cached document (the analysis ``ffe precompute`` fills) when no Redis is configured:
    the journal is then what the processes share."""

    __tablename__ = "cache_entries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(Json)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class User(Base):
    """A dashboard user. Only a password hash is kept."""

    __tablename__ = "users"
    __table_args__ = (_one_of("role", ROLES),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class ApiKey(Base):
    """An API key: a public ``prefix`` to find it by and a hash of the secret, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[str]] = mapped_column(Json, default=list)
    user_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEntry(Base):
    """Who did what, when: control actions, key changes, restores."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(256))
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)


class AgentState(Base):
    """One row per trading account: which run trades it, who holds its lease, where the agent
    got to (``checkpoint``), and whether it is paused or halted.

    The lease makes one running agent per account: an agent takes it by writing its ``owner``
    while the row is free or the previous lease has expired, and renews it as it runs."""

    __tablename__ = "agent_states"
    __table_args__ = (_one_of("status", AGENT_STATUSES),)

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), default="stopped")
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    halted_reason: Mapped[str | None] = mapped_column(Text)
    last_bar_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(Json)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now, onupdate=utc_now)


class AgentCommand(Base):
    """A control command for an account's agent, from the CLI or the API; the running agent
    carries it out and stamps ``handled_at``."""

    __tablename__ = "agent_commands"
    __table_args__ = (
        _one_of("command", AGENT_COMMANDS),
        Index("ix_agent_commands_account_handled_at", "account", "handled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    handled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[str | None] = mapped_column(Text)
    # What the command is about (close: the symbol and the quantity the person saw) and,
    # once carried out, what came of it ("outcome").
    payload: Mapped[dict[str, Any] | None] = mapped_column(Json)


class Approval(Base):
    """An order waiting for a person to approve or reject it before ``expires_at``."""

    __tablename__ = "approvals"
    __table_args__ = (
        _one_of("status", APPROVAL_STATUSES),
        Index("ix_approvals_account_status", "account", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = _run_fk()
    account: Mapped[str] = mapped_column(String(64))
    decision_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("decisions.id", ondelete="SET NULL"), index=True
    )
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)  # the bar the order was decided on
    symbol: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[float] = mapped_column(Double)
    reference_price: Mapped[float] = mapped_column(Double)
    rationale: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(128))


#: Tables in an order where every foreign key points backwards (for copies and checks).
TABLES = tuple(Base.metadata.sorted_tables)
