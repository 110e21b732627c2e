"""Logging: one root handler, JSON lines or text with the request id, and secrets masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ffe.obs.logs import (
    MASK,
    bind_request_id,
    configure_logging,
    new_request_id,
    redact,
    request_id,
)
from ffe.obs.tracing import configure_tracing, shutdown_tracing, span

log = logging.getLogger("ffe.tests.obs")


@pytest.fixture
def restore_root() -> Iterator[logging.Logger]:
    """Put the root logger back as it was: configure_logging changes process-wide state."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def out(restore_root) -> io.StringIO:
    return io.StringIO()


def json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_configure_logging_when_called_twice_then_one_handler_with_latest_settings(out):
    root = logging.getLogger()
    # Others' handlers (pytest's) stay; ffe's own is one however often it is configured, in
    # this test or, in the same worker process, in a test before it (a CLI command run).
    others = [h for h in root.handlers if type(h).__name__ != "_FfeHandler"]

    configure_logging("WARNING", stream=out)
    configure_logging("info", json_format=True)
    log.info("started")

    assert [h for h in root.handlers if type(h).__name__ != "_FfeHandler"] == others
    assert [type(h).__name__ for h in root.handlers].count("_FfeHandler") == 1
    assert root.level == logging.INFO
    assert json_lines(out)[0]["message"] == "started"


def test_configure_logging_when_old_stream_closed_then_new_stream_takes_over(out):
    gone = io.TextIOWrapper(io.BytesIO())  # unlike StringIO, its flush refuses once closed
    configure_logging("INFO", stream=gone)
    gone.close()  # a CLI runner's buffer, thrown away after its command

    configure_logging("INFO", stream=out)
    log.info("still logging")

    assert "still logging" in out.getvalue()


def test_configure_logging_when_level_unknown_then_value_error_listing_levels(restore_root):
    with pytest.raises(ValueError, match="unknown log level 'LOUD': use one of CRITICAL"):
        configure_logging("LOUD")


def test_json_when_logging_then_time_level_logger_message_and_no_request_id(out):
    configure_logging("INFO", json_format=True, stream=out)

    log.info("order %s filled", "o-1")

    [line] = json_lines(out)
    assert line["level"] == "INFO"
    assert line["logger"] == "ffe.tests.obs"
    assert line["message"] == "order o-1 filled"
    assert str(line["time"]).endswith("+00:00")
    assert "request_id" not in line
    assert "exc_info" not in line


def test_json_when_request_id_bound_then_included(out):
    configure_logging("INFO", json_format=True, stream=out)

    with bind_request_id("abc123"):
        log.info("inside")
    log.info("outside")

    inside, outside = json_lines(out)
    assert inside["request_id"] == "abc123"
    assert "request_id" not in outside


def test_json_when_exception_then_exc_info_text(out):
    configure_logging("INFO", json_format=True, stream=out)

    try:
        raise RuntimeError("broker down")
    except RuntimeError:
        log.exception("order failed")

    [line] = json_lines(out)
    assert "Traceback" in str(line["exc_info"])
    assert "RuntimeError: broker down" in str(line["exc_info"])


def test_json_when_extra_fields_then_included_and_secrets_masked(out):
    configure_logging("INFO", json_format=True, stream=out)

    log.info("denied", extra={"order_id": "o-7", "api_key": "sk-live-123", "qty": 2.5})

    [line] = json_lines(out)
    assert line["order_id"] == "o-7"
    assert line["qty"] == 2.5
    assert line["api_key"] == MASK
    assert "sk-live-123" not in out.getvalue()


def test_json_when_extra_names_a_core_field_then_core_field_wins(out):
    configure_logging("INFO", json_format=True, stream=out)

    log.info("real", extra={"level": "fake", "logger": "fake"})

    [line] = json_lines(out)
    assert (line["level"], line["logger"]) == ("INFO", "ffe.tests.obs")


def test_json_when_span_active_then_trace_id_included(out):
    configure_logging("INFO", json_format=True, stream=out)
    configure_tracing(None, exporter=InMemorySpanExporter())
    try:
        with span("request"):
            log.info("traced")
    finally:
        shutdown_tracing()

    [line] = json_lines(out)
    assert len(str(line["trace_id"])) == 32


def test_text_when_request_id_set_then_in_brackets(out):
    configure_logging("INFO", stream=out)

    with bind_request_id("rid42"):
        log.warning("slow request")
    log.warning("no request")

    inside, outside = out.getvalue().splitlines()
    assert inside.endswith("ffe.tests.obs [rid42] slow request")
    assert " WARNING " in inside
    assert outside.endswith("ffe.tests.obs no request")


def test_text_when_level_below_configured_then_dropped(out):
    configure_logging("WARNING", stream=out)

    log.info("chatter")

    assert out.getvalue() == ""


def test_redact_when_secret_keys_then_masked_at_any_depth_and_input_untouched():
    headers = {
        "Authorization": "Bearer t0k",
        "Cookie": "session=abc",
        "Accept": "application/json",
        "nested": {"db_password": "pw", "host": "db", "rows": [{"refresh_token": "r"}]},
        "X-API-Key": "k",
        "client_secret": "s",
    }

    clean = redact(headers)

    assert clean == {
        "Authorization": MASK,
        "Cookie": MASK,
        "Accept": "application/json",
        "nested": {"db_password": MASK, "host": "db", "rows": [{"refresh_token": MASK}]},
        "X-API-Key": MASK,
        "client_secret": MASK,
    }
    assert headers["Authorization"] == "Bearer t0k"


def test_new_request_id_when_called_then_short_unique_hex():
    ids = {new_request_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(len(rid) == 16 and int(rid, 16) >= 0 for rid in ids)


def test_bind_request_id_when_nested_then_previous_restored():
    with bind_request_id("outer"):
        with bind_request_id() as inner:
            assert request_id.get() == inner != "outer"
        assert request_id.get() == "outer"
    assert request_id.get() is None
