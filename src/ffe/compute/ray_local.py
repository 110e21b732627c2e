"""A Ray cluster of several nodes on this machine, on loopback: for the cluster tests and the
scaling benchmark, which need real nodes (their own raylets, object stores and worker
processes) without a second machine.

Every port it opens is taken from ``base_port`` upward (``_PORTS_PER_NODE`` per node), so it
never lands on Ray's default 6379 (Redis's) nor on another cluster's range, and its files go
under a temporary directory of its own. It changes this process's environment while it runs
(the nodes and their workers inherit it) and restores it when stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from ffe.compute.ray_executor import import_ray

_PORTS_PER_NODE = 100  # a node's services use the first ten, its worker processes the rest
_WORKER_PORTS = (20, 99)  # offsets of the worker processes' ports within a node's range


class LocalRayCluster:
    """A head and ``nodes - 1`` more nodes of ``cpus`` CPUs each, bound to 127.0.0.1."""

    def __init__(
        self,
        base_port: int,
        *,
        nodes: int = 2,
        cpus: int = 1,
        object_store_mb: int = 100,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: extra variables for the nodes' processes (a PYTHONPATH, say)."""
        self._base, self._nodes, self._cpus = base_port, nodes, cpus
        self._store = object_store_mb * 1024 * 1024
        self._extra = dict(env or {})
        self._saved: dict[str, str | None] = {}
        self._temp: str | None = None
        self._cluster: Any = None
        self._added = 0
        self.workers: list[Any] = []  # the nodes after the head, to remove one mid-run

    @property
    def address(self) -> str:
        """The head's GCS address, as ``ray.init(address=...)`` and ffe take it."""
        return f"127.0.0.1:{self._base}"

    def start(self) -> LocalRayCluster:
        """Start the head and the other nodes; returns once all are up. On a failure what
        had started is stopped (and the environment restored) before the error goes on."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalRayCluster:
        self._temp = tempfile.mkdtemp(prefix="ffe-ray-")
        os.makedirs(os.path.join(self._temp, "ray"))
        self._set_env(
            {
                # Ray writes its session files and the "current cluster" file here, not in
                # the machine-wide directory another cluster may be using.
                "RAY_TMPDIR": self._temp,
                # A node's address is loopback, not the machine's outward interface.
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_USAGE_STATS_ENABLED": "0",
                "AUTOSCALER_METRIC_PORT": str(self._base + 8),
                **self._extra,
            }
        )
        import_ray()
        from ray._private import ray_constants
        from ray.cluster_utils import Cluster

        ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray was imported, maybe earlier
        head = {**self._node_args(0), "gcs_server_port": self._base, "include_dashboard": False}
        self._cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(self._nodes - 1):
            self.add_node()
        return self

    def add_node(self, attempts: int = 2) -> Any:
        """One more node, on the next free port range; returns Ray's handle of it. A node
        whose raylet does not register within Ray's 30 s ("timed out during startup", seen
        on a busy 2-core machine) is started once more on the next range."""
        for attempt in range(1, attempts + 1):
            self._added += 1
            try:
                node = self._cluster.add_node(**self._node_args(self._added))
            except Exception as exc:
                if attempt == attempts or "timed out during startup" not in str(exc):
                    raise
                continue
            self.workers.append(node)
            return node
        raise AssertionError("unreachable: the last attempt returns or raises")

    def remove_node(self, node: Any) -> None:
        """Kill ``node``'s processes at once, as a lost machine would stop."""
        self._cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def stop(self) -> None:
        """Disconnect this process, stop every node and restore the environment."""
        if self._cluster is not None:
            import_ray().shutdown()
            self._cluster.shutdown()
            self._cluster = None
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _node_args(self, number: int) -> dict[str, Any]:
        base = self._base + number * _PORTS_PER_NODE
        return {
            "num_cpus": self._cpus,
            "object_store_memory": self._store,
            "node_ip_address": "127.0.0.1",
            "node_manager_port": base + 1,
            "object_manager_port": base + 2,
            "metrics_export_port": base + 3,
            "metrics_agent_port": base + 4,
            "dashboard_agent_listen_port": base + 5,
            "runtime_env_agent_port": base + 6,
            "min_worker_port": base + _WORKER_PORTS[0],
            "max_worker_port": base + _WORKER_PORTS[1],
        }

    def _set_env(self, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            self._saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value
