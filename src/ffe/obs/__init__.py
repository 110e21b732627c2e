"""Observability: what the running service tells its operators.

- ``metrics``: ``Metrics``, the Prometheus metrics in a registry of their own, merged over
  worker processes when ``PROMETHEUS_MULTIPROC_DIR`` is set before prometheus_client is imported;
  the trading agent's are built in ``agent_metrics``, the merging and the job queue's gauges
  are ``multiprocess``'s.
- ``health``: ``HealthChecks``, named async probes run concurrently under timeouts, and probes
  for disk, memory, an agent's heartbeat and any ping (database, Redis).
- ``logs``: ``configure_logging`` (JSON lines or text, with the request id), ``request_id``
  and ``redact`` for secrets.
- ``tracing``: ``configure_tracing`` (OpenTelemetry over OTLP/HTTP, off without an endpoint),
  ``span`` and ``current_trace_id``.

The submodules are imported one by one, so a process that only logs never loads
prometheus_client or OpenTelemetry's exporter. Imports nothing from ffe but ``ffe.domain``.
"""
