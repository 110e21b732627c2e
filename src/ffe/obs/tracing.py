"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

``span()`` works either way: without ``configure_tracing`` it uses OpenTelemetry's global
tracer, a no-op unless something else installed a provider. The provider built here is kept
in this module rather than installed as OpenTelemetry's global one, which can be set only once
per process; that keeps it replaceable (``shutdown_tracing``), as tests need.

Configure it in each worker process (the app factory or its lifespan), not before workers are
started: the batch processor exports from a thread of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import AttributeValue

__all__ = [
    "configure_tracing",
    "current_trace_id",
    "force_flush",
    "otlp_traces_url",
    "shutdown_tracing",
    "span",
]

_TRACER_NAME = "ffe"
_EXPORT_TIMEOUT_S = 5.0


class _State:
    provider: TracerProvider | None = None


_state = _State()


def otlp_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a bare collector address gets the ``/v1/traces`` path."""
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.netloc:
        raise ValueError(
            f"tracing endpoint {endpoint!r} is not a URL: give one like http://collector:4318"
        )
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def configure_tracing(
    endpoint: str | None,
    service_name: str = "ffe",
    *,
    exporter: SpanExporter | None = None,
) -> bool:
    """Export spans to an OTLP/HTTP collector at ``endpoint``; True when tracing is on.

    With neither ``endpoint`` nor ``exporter``, tracing stays (or becomes) a no-op and this
    returns False. ``exporter`` replaces the OTLP exporter (tests, a console exporter). Calling
    it again shuts the previous provider down first.
    """
    shutdown_tracing()
    if exporter is None:
        if endpoint is None:
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(endpoint), timeout=_EXPORT_TIMEOUT_S)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _state.provider = provider
    return True


def shutdown_tracing() -> None:
    """Flush and stop the configured provider, if any; tracing is a no-op afterwards."""
    provider, _state.provider = _state.provider, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    """Whether spans are exported (callers may skip building them otherwise)."""
    return _state.provider is not None


def force_flush(timeout_ms: int = 5_000) -> bool:
    """Export the spans waiting in the batch now; True when done in time or nothing to do."""
    if _state.provider is None:
        return True
    return _state.provider.force_flush(timeout_ms)


def _tracer() -> trace.Tracer:
    if _state.provider is not None:
        return _state.provider.get_tracer(_TRACER_NAME)
    return trace.get_tracer(_TRACER_NAME)


def _attribute(value: object) -> AttributeValue:
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


@contextmanager
def span(name: str, **attributes: object) -> Iterator[trace.Span]:
    """A span around the block, current inside it; an exception is recorded and re-raised.

    Attribute values that OpenTelemetry cannot hold are exported as text; ``None`` is dropped.
    """
    attrs = {key: _attribute(value) for key, value in attributes.items() if value is not None}
    with _tracer().start_as_current_span(name, attributes=attrs) as current:
        yield current


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside a recorded span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id)
