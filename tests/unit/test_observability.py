"""Health, readiness, metrics, request ids and log formats at the HTTP edge."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from allocation.adapters.health import Readiness
from allocation.config import ConfigError, Settings
from allocation.entrypoints.api.app import create_app
from allocation.entrypoints.cli import logging_config
from allocation.service_layer import log_context
from tests.conftest import FakeService
from tests.waiting import wait_until


class SwitchableReadiness:
    def __init__(self) -> None:
        self.checks = {"database": "ok", "migrations": "ok", "redis": "not configured"}
        self.servers: dict[str, dict[str, object]] = {}

    def __call__(self) -> Readiness:
        return Readiness(dict(self.checks), dict(self.servers))


@pytest.fixture
def readiness() -> SwitchableReadiness:
    return SwitchableReadiness()


@pytest.fixture
def client(fake_service: FakeService, readiness: SwitchableReadiness) -> Iterator[FlaskClient]:
    yield create_app(
        Settings(), service=dataclasses.replace(fake_service.api, readiness=readiness)
    ).test_client()


def test_health_says_the_process_is_alive(client: FlaskClient) -> None:
    response = client.get("/health")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_ready_reports_each_dependency(client: FlaskClient, readiness: SwitchableReadiness) -> None:
    ok = client.get("/ready")
    assert ok.status_code == 200
    assert ok.get_json() == {"status": "ready", "checks": readiness.checks}

    readiness.checks["database"] = "unreachable: OperationalError"
    down = client.get("/ready")
    assert down.status_code == 503
    assert down.get_json()["status"] == "unavailable"
    assert down.get_json()["checks"]["database"] == "unreachable: OperationalError"


def test_ready_names_the_servers_it_reached_beside_the_checks(
    client: FlaskClient, readiness: SwitchableReadiness
) -> None:
    readiness.servers = {
        "database": {"host": "10.0.0.12", "port": 5432, "primary": True},
        "redis": {"host": "10.0.0.21", "port": 6379},
    }
    body = client.get("/ready").get_json()
    assert body == {"status": "ready", "checks": readiness.checks, **readiness.servers}


def test_metrics_count_requests_allocations_and_out_of_stock(client: FlaskClient) -> None:
    def sample(text: str, prefix: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    before = client.get("/metrics").get_data(as_text=True)
    client.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 1})
    client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 1})
    client.post("/allocate", json={"orderid": "o2", "sku": "LAMP", "qty": 1})
    after = client.get("/metrics").get_data(as_text=True)

    assert (
        sample(after, "allocation_allocations_total")
        - sample(before, "allocation_allocations_total")
        == 1
    )
    assert (
        sample(after, "allocation_out_of_stock_total")
        - sample(before, "allocation_out_of_stock_total")
        == 1
    )
    allocate_409 = 'allocation_http_requests_total{endpoint="/allocate",method="POST",status="409"}'
    assert sample(after, allocate_409) - sample(before, allocate_409) == 1
    assert 'allocation_http_request_seconds_bucket{endpoint="/allocate"' in after
    # back_in_stock (the first batch), line_allocated, sold_out, out_of_stock
    assert "allocation_outbox_unsent 4.0" in after


def test_a_request_id_is_kept_or_made_and_returned(client: FlaskClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health")
    assert len(made.headers["X-Request-ID"]) == 32
    unusable = client.get("/health", headers={"X-Request-ID": "x" * 500})
    assert len(unusable.headers["X-Request-ID"]) == 32


def test_the_request_log_line_carries_the_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(logging_config.ContextFilter())
    with caplog.at_level(logging.INFO, logger="allocation.entrypoints.api"):
        client.get("/health", headers={"X-Request-ID": "req-42"})
    [record] = [r for r in caplog.records if "GET /health 200" in r.getMessage()]
    assert record.request_id == "req-42"


def test_json_log_lines_are_objects_with_the_bound_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging_config.formatter("json"))
    handler.addFilter(logging_config.ContextFilter())
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context.bound(request_id="r1", message_id="m1"):
            logger.warning("hello %s", "world")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "hello world"
    assert (line["level"], line["request_id"], line["message_id"]) == ("WARNING", "r1", "m1")
    assert "context" not in line


def test_text_logs_show_the_bound_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "hi", None, None)
    with log_context.bound(message_id="m9"):
        logging_config.ContextFilter().filter(record)
    assert "message_id=m9 hi" in logging_config.formatter("text").format(record)


def test_log_format_must_be_text_or_json() -> None:
    assert Settings.from_env({"LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


@pytest.mark.parametrize(
    "message",
    ["GET /allocations/o1 200 0.4ms", "bad\r\nline\x1b[31m \\ %s", "ünïcode\u2028 ok"],
)
def test_the_text_format_written_out_is_the_format_string(message: str) -> None:
    generic = logging.Formatter(logging_config.TEXT_FORMAT)
    ours = logging_config.TextFormatter()
    record = logging.LogRecord("allocation.x", logging.INFO, __file__, 1, message, None, None)
    with log_context.bound(request_id="r1"):
        logging_config.ContextFilter().filter(record)
    try:
        raise ValueError("boom\nforged line")
    except ValueError:
        failed = logging.LogRecord("a", logging.ERROR, __file__, 1, message, None, sys.exc_info())
    logging_config.ContextFilter().filter(failed)

    for each in (record, failed):
        expected = logging_config.escape_controls(generic.formatMessage(_with_time(each, ours)))
        assert ours.format(each).split("\n")[0] == expected
    assert ours.format(failed).split("\n")[1:] == [
        "  " + logging_config.escape_controls(line)
        for line in generic.formatException(failed.exc_info).split("\n")
    ]


def _with_time(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    record.message = record.getMessage()
    record.asctime = formatter.formatTime(record)
    return record


def test_batched_lines_reach_the_file_soon_and_warnings_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "stderr.log"
    with target.open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        handler = logging_config.BatchedStreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))

        def line(level: int, message: str) -> None:
            handler.handle(logging.LogRecord("x", level, __file__, 1, message, None, None))

        line(logging.INFO, "first")  # after a quiet spell: at once
        line(logging.INFO, "second")  # in a burst: batched
        assert target.read_text() == "first\n"
        wait_until("the batch handed over", lambda: target.read_text() == "first\nsecond\n", 2)
        line(logging.INFO, "third")
        line(logging.WARNING, "a warning")  # at once, with what came before it
        assert target.read_text().endswith("third\na warning\n")
        line(logging.INFO, "last")
        handler.close()
        assert target.read_text().endswith("a warning\nlast\n")
