"""Starting an agent, once for every caller: build it from a launch request and run it
reported (its decisions, fills, equity and state as live events, its metrics, its drawdown
carried over from its journal), wherever it runs.

Both ``ffe agent run`` (a process of its own, probed on ``--health-port``) and the API keep
one session running and restart it in the process after journal failures
(``ffe.service.supervisor``). Control commands (pause, stop, emergency stop, approvals)
reach either through the journal (``ffe.agent.control``).

Nothing here reads settings: the caller (the CLI, the API's composition) hands in how to
build an agent, where its events go and the metrics they count in.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ffe.agent import persist
from ffe.agent.reports import AgentReport, Snapshot
from ffe.agent.runner import Agent
from ffe.domain.errors import FfeError
from ffe.kv.events import Publisher
from ffe.obs.health import HealthChecks, ProbeError, ping_probe
from ffe.obs.metrics import Metrics
from ffe.service.reporting import AgentReporter
from ffe.service.runs import journal_drawdown

log = logging.getLogger(__name__)


@dataclass
class AgentLaunch:
    """What an agent trades and how: the request both ``ffe agent run`` and the API's
    ``POST /api/v1/agent/start`` make. None keeps the configured value."""

    strategy: str = "sma_cross"
    symbols: list[str] = field(default_factory=lambda: ["SP500"])
    params: dict[str, Any] = field(default_factory=dict)
    speed: float | None = 20.0  # bars a second when replaying; None: at once
    approval: str | None = None
    fresh: bool = False  # a new run even if the account's last one is unfinished
    account: str | None = None
    replay: bool = True  # replay stored bars, or poll the data for new ones
    start: str | None = None
    end: str | None = None
    cash: float | None = None
    commission: float | None = None
    live: bool = False  # real money, when the configuration allows it too
    feed: str | None = None  # a venue's live bars (ccxt:binance) instead of stored ones
    timeframe: str | None = None  # the feed's bars (1m when None)
    api_url: str | None = None  # the live feed's REST base (`--api-url`; never from the API)
    demo: bool = False  # the demo's choice (``ffe.domain.defaults.DEMO``), as `ffe run` makes it


class BuildAgent(Protocol):
    """Builds an agent, its journal open (``ffe.bootstrap.agent`` bound to its settings)."""

    def __call__(
        self,
        strategy: str,
        params: dict[str, Any],
        symbols: list[str],
        *,
        replay: bool = True,
        start: str | None = None,
        end: str | None = None,
        account: str | None = None,
        approval: str | None = None,
        cash: float | None = None,
        commission: float | None = None,
        speed: float | None = None,
        fresh: bool = False,
        live: bool = False,
        feed: str | None = None,
        timeframe: str | None = None,
        api_url: str | None = None,
    ) -> Awaitable[Agent]: ...


class AgentLauncher:
    """Builds agents from launch requests, each reported through ``publisher`` and
    counted in ``metrics``."""

    def __init__(self, build: BuildAgent, publisher: Publisher, metrics: Metrics) -> None:
        self.build, self.publisher, self.metrics = build, publisher, metrics

    async def open(self, launch: AgentLaunch, *, owner: str | None = None) -> AgentSession:
        """The agent ``launch`` asks for, reported, not yet running. With ``owner`` (a
        restart), it takes back the lease that owner held at once instead of waiting it out,
        and resumes the run it was trading."""
        agent = await self.build(
            launch.strategy,
            dict(launch.params),
            list(launch.symbols),
            replay=launch.replay,
            start=launch.start,
            end=launch.end,
            account=launch.account,
            approval=launch.approval,
            cash=launch.cash,
            commission=launch.commission,
            speed=launch.speed,
            fresh=launch.fresh and owner is None,
            live=launch.live,
            feed=launch.feed,
            timeframe=launch.timeframe,
            api_url=launch.api_url,
        )
        if owner is not None:
            agent.owner = owner
        reporter = AgentReporter(self.publisher, self.metrics)
        reporter.attach(agent)
        session = AgentSession(agent, reporter)
        agent.watch(on_open=session.seed)
        return session


class AgentSession:
    """One agent and what reports it: run it, stop it, read it while it runs."""

    def __init__(self, agent: Agent, reporter: AgentReporter) -> None:
        self.agent, self.reporter = agent, reporter

    @property
    def account(self) -> str:
        return self.agent.config.account

    @property
    def params(self) -> dict[str, Any]:
        """The strategy's parameters as it typed them (``"10"`` became ``10``)."""
        return dict(self.agent.spec.params)

    @property
    def peak(self) -> float:
        """The run's highest equity, bar by bar, for its drawdown."""
        return self.reporter.peak

    @property
    def max_drawdown(self) -> float:
        """The run's worst drawdown so far (a fraction <= 0)."""
        return self.reporter.max_drawdown

    def snapshot(self) -> Snapshot | None:
        """What the agent holds after its last finished bar (None before its first)."""
        return self.agent.snapshot()

    def request_stop(self) -> None:
        """Stop after the current step."""
        self.agent.request_stop()

    async def run(self) -> AgentReport:
        """Run the agent to its end; then its last events and its state are published."""
        try:
            return await self.agent.run()
        finally:
            # Events still on their way read the agent's journal: let them land before it
            # closes (a read left waiting on a closed connection never finishes).
            await self.reporter.settle()
            await self.reporter.publish_state(self.agent)  # stopped (or halted), lease released

    async def close(self) -> str | None:
        """Close the agent's journal; a failure is logged and told (the agent is over)."""
        try:
            await self.agent.db.dispose()
        except Exception as exc:
            log.error("agent: could not close its journal: %s", exc, exc_info=exc)
            return f"{type(exc).__name__}: {exc}"
        return None

    async def seed(self, run_id: str) -> None:
        """Carry the peak and worst drawdown of the run the agent opened (or resumed) over
        from its journal, so a restart does not measure the drawdown from where it began."""
        try:
            peak, worst = await journal_drawdown(self.agent.db, run_id)
        except FfeError as exc:  # the portfolio's drawdown then starts here; trading goes on
            log.warning("could not read the run's drawdown from the journal: %s", exc)
            return
        self.reporter.seed(peak, worst)


def agent_checks(which: Agent | Callable[[], Agent | None]) -> HealthChecks:
    """Readiness of an agent's process: its journal answers, and it holds its account's
    lease (not yet while it starts; not any more once another agent took it). Whether it
    trades is reported too, not critically: stopped on purpose, the report is "degraded"
    with status 200. ``which`` is the agent, or what returns the one running now (None while
    it is being built): a process that restarts its agent after a journal failure."""

    def current() -> Agent:
        agent = which() if callable(which) else which
        if agent is None:
            raise ProbeError("the agent is starting")
        return agent

    async def ping() -> None:
        await current().db.ping()

    checks = HealthChecks()
    checks.add("journal", ping_probe(ping, "journal"), dependency="database")

    async def lease() -> str:
        agent = current()
        account = agent.config.account
        state = await persist.get_state(agent.db, account)
        if state is None or state.owner != agent.owner or not persist.lease_live(state):
            holder = None if state is None else state.owner
            raise ProbeError(
                f"this agent ({agent.owner}) does not hold the lease on account {account!r} "
                f"(held by {holder or 'nobody'})"
            )
        return f"held on account {account!r} until {state.lease_expires_at:%H:%M:%S} UTC"

    checks.add("lease", lease)

    async def trading() -> str:
        # Not critical: an agent stopped on purpose (``--on-stop wait``) is healthy and ready
        # for its commands; an orchestrator must neither restart it nor take it out of
        # service. The check says why it trades nothing.
        agent = current()
        if agent.stopped_by is not None:
            raise ProbeError(
                f"stopped on purpose by {agent.stopped_by}: trading nothing until "
                f"`ffe agent resume --account {agent.config.account}`"
            )
        return "paused" if agent.paused else "trading"

    checks.add("trading", trading, critical=False)
    return checks
