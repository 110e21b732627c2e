"""Tracing: a no-op without an endpoint, spans exported when configured, OTLP over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ffe.obs.tracing import (
    configure_tracing,
    current_trace_id,
    force_flush,
    otlp_traces_url,
    shutdown_tracing,
    span,
)


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    shutdown_tracing()
    yield
    shutdown_tracing()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    assert configure_tracing(None, "ffe-test", exporter=memory)
    return memory


def finished(exporter: InMemorySpanExporter):
    assert force_flush()
    return exporter.get_finished_spans()


def test_configure_tracing_when_no_endpoint_then_false_and_span_is_noop():
    assert configure_tracing(None) is False

    with span("decide", symbol="BTC") as current:
        trace_id = current_trace_id()

    assert not current.is_recording()
    assert trace_id is None


def test_span_when_exporter_injected_then_exported_with_attributes_and_service(exporter):
    with span("decide", symbol="BTC", confidence=0.7, day=date(2024, 5, 1), note=None):
        pass

    [exported] = finished(exporter)
    assert exported.name == "decide"
    assert dict(exported.attributes) == {"symbol": "BTC", "confidence": 0.7, "day": "2024-05-01"}
    assert exported.resource.attributes["service.name"] == "ffe-test"


def test_span_when_nested_then_child_has_parent_and_same_trace(exporter):
    with span("request"), span("decide"):
        pass

    child, parent = finished(exporter)
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id


def test_current_trace_id_when_inside_span_then_matches_exported_trace(exporter):
    with span("request"):
        inside = current_trace_id()
    outside = current_trace_id()

    [exported] = finished(exporter)
    assert inside == f"{exported.context.trace_id:032x}"
    assert outside is None


def test_span_when_block_raises_then_error_recorded_and_reraised(exporter):
    with pytest.raises(KeyError), span("decide"):
        raise KeyError("BTC")

    [exported] = finished(exporter)
    assert exported.status.status_code is StatusCode.ERROR
    assert [event.name for event in exported.events] == ["exception"]


def test_shutdown_tracing_when_configured_then_later_spans_not_exported(exporter):
    with span("before"):
        pass
    assert len(finished(exporter)) == 1

    shutdown_tracing()
    with span("after") as current:
        pass

    assert not current.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["before"]


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/custom/traces", "https://otel.example/custom/traces"),
    ],
)
def test_otlp_traces_url_when_bare_address_then_traces_path_added(endpoint, url):
    assert otlp_traces_url(endpoint) == url


def test_configure_tracing_when_endpoint_not_a_url_then_value_error():
    with pytest.raises(ValueError, match="http://collector:4318"):
        configure_tracing("collector:4318")


class _Collector(BaseHTTPRequestHandler):
    """Records each POST as (path, content type, body) and answers 200."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def collector(monkeypatch) -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_COMPRESSION", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", raising=False)
    received: list[tuple[str, str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_configure_tracing_when_endpoint_then_spans_posted_as_otlp_protobuf(collector):
    base_url, received = collector
    assert configure_tracing(base_url, service_name="ffe-api") is True

    with span("GET /api/v1/runs/{run_id}", status=200):
        pass
    assert force_flush()

    [(path, content_type, body)] = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "ffe-api"
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["GET /api/v1/runs/{run_id}"]
