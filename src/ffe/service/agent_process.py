"""``ffe agent run``: one account's agent in a process of its own, reported as the agent
inside the API is (``ffe.service.reporting``) and probed on ``--health-port``.

Its events go through Redis pub/sub when ``redis.url`` is set, which every API worker's
stream reads; without Redis they go nowhere from here and the API reads what the agent
journaled instead. Control commands reach it through the journal whichever way.
"""

from __future__ import annotations

import contextlib
import logging

from ffe import bootstrap
from ffe.agent import persist
from ffe.agent.reports import AgentReport
from ffe.agent.runner import Agent
from ffe.config import Settings
from ffe.domain.errors import ConfigError
from ffe.obs.health import HealthChecks, ProbeError, ping_probe
from ffe.obs.metrics import Metrics
from ffe.service.probe import ProbeServer, probe_app
from ffe.service.reporting import AgentReporter

log = logging.getLogger(__name__)


async def run_agent(
    settings: Settings, agent: Agent, *, health_host: str = "127.0.0.1", health_port: int = 0
) -> AgentReport:
    """Run ``agent`` to its end, publishing its events and metrics, with the probes on
    ``health_host:health_port`` (0: none) while it runs; its journal is closed after."""
    kv = bootstrap.kv_backends(settings)
    metrics = Metrics()
    reporter = AgentReporter(bootstrap.agent_publisher(kv, in_process=False), metrics)
    reporter.attach(agent)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(kv.close)
        stack.push_async_callback(agent.db.dispose)
        if health_port:
            probe = ProbeServer(probe_app(agent_checks(agent), metrics), health_host, health_port)
            try:
                await probe.start()
            except OSError as exc:
                await agent.broker.close()  # the agent never ran: nothing else closes it
                raise ConfigError(str(exc)) from exc
            stack.push_async_callback(probe.stop)
            log.info("agent: probes on http://%s:%d/health/ready", health_host, probe.port)
        try:
            return await agent.run()
        finally:
            await reporter.settle()
            await reporter.publish_state(agent)  # stopped (or halted), lease released


def agent_checks(agent: Agent) -> HealthChecks:
    """Readiness of an agent's process: its journal answers, and it holds its account's
    lease (not yet while it starts; not any more once another agent took it)."""
    checks = HealthChecks()
    checks.add("journal", ping_probe(agent.db.ping, "journal"))
    account = agent.config.account

    async def lease() -> str:
        state = await persist.get_state(agent.db, account)
        if state is None or state.owner != agent.owner or not persist.lease_live(state):
            holder = None if state is None else state.owner
            raise ProbeError(
                f"this agent ({agent.owner}) does not hold the lease on account {account!r} "
                f"(held by {holder or 'nobody'})"
            )
        return f"held on account {account!r} until {state.lease_expires_at:%H:%M:%S} UTC"

    checks.add("lease", lease)
    return checks
