"""Operating the real processes: readiness, metrics across workers, the command line."""

from __future__ import annotations

import os
from pathlib import Path

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.e2e.conftest import Service, metric_total, run_cli, start_relay, unique
from tests.e2e.test_api import add_batch, allocate
from tests.waiting import wait_until


def test_ready_checks_database_redis_and_migrations(
    api: Service, e2e_environment: dict[str, str]
) -> None:
    response = requests.get(f"{api.url}/ready", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}
    # The server it reached, and that it takes writes (a plain REDIS_URL names no master).
    url = make_url(e2e_environment["DATABASE_URL"])
    assert body["database"] == {"host": url.host, "port": url.port, "primary": True}
    assert "redis" not in body


def allocations_counted(api: Service) -> tuple[float, str]:
    """allocation_allocations_total as one /metrics answer reports it, and the answer."""
    return metric_total(api.url, "allocation_allocations_total")


def test_metrics_add_up_across_workers(api: Service) -> None:
    sku = unique("sku")
    add_batch(api, unique("batch"), sku, 100)
    # The session's API has counted other tests' allocations: count from here on.
    before, _ = allocations_counted(api)
    for _ in range(12):  # more requests than one worker's threads: both workers answer
        assert allocate(api, unique("order"), sku, 1).status_code == 202
    text = ""
    for _ in range(4):  # whichever worker answers, it reports every worker's counts
        total, text = allocations_counted(api)
        assert total - before == 12
    assert "allocation_outbox_unsent" in text
    assert "allocation_http_request_seconds_bucket" in text


def test_the_openapi_description_and_docs_are_served(api: Service) -> None:
    spec = requests.get(f"{api.url}/openapi.json", timeout=10).json()
    assert {"/allocate", "/add_batch", "/allocations/{orderid}", "/ready"} <= set(spec["paths"])
    docs = requests.get(f"{api.url}/docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_help_lists_every_command_and_version_prints() -> None:
    help_text = run_cli("--help").stdout
    for command in (
        "migrate",
        "api",
        "consumer",
        "relay",
        "rebuild-views",
        "dead-letters",
        "outbox",
        "hold-expiry",
        "check-movements",
    ):
        assert f"  {command} " in help_text, help_text
    commands_part = help_text.split("Commands:")[1]
    assert "..." not in commands_part  # every command's line is whole
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("allocation, version ")


def test_an_unreachable_database_is_one_line_and_a_nonzero_exit(
    e2e_environment: dict[str, str],
) -> None:
    env = {**e2e_environment, "DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/none"}
    result = run_cli("outbox", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: The database is unavailable")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    bad_config = run_cli("outbox", env={**e2e_environment, "SMTP_PORT": "lots"})
    assert bad_config.returncode == 2
    assert bad_config.stderr == "Error: SMTP_PORT: must be a whole number (got 'lots')\n"


def test_outbox_and_rebuild_views_report(api: Service, e2e_environment: dict[str, str]) -> None:
    outbox = run_cli("outbox", "--json", env=e2e_environment)
    assert outbox.returncode == 0, outbox.stderr
    assert set(outbox.stdout and __import__("json").loads(outbox.stdout)) == {
        "unsent",
        "oldest_age_seconds",
    }
    rebuilt = run_cli("rebuild-views", env=e2e_environment)
    assert rebuilt.returncode == 0, rebuilt.stderr
    lines = rebuilt.stdout.splitlines()
    assert [line.split(" unchanged ")[0] for line in lines] == [
        "allocations_view: added 0, removed 0, corrected 0,",
        "availability_view: added 0, removed 0, corrected 0,",
    ]


def test_the_api_says_where_it_serves_once_and_stays_quiet(
    api: Service, e2e_environment: dict[str, str]
) -> None:
    assert requests.get(f"{api.url}/ready", timeout=10).status_code == 200
    log = api.output()
    database = make_url(e2e_environment["DATABASE_URL"]).render_as_string(hide_password=True)
    line = (
        f"serving the API at {api.url} (docs: {api.url}/docs); database {database};"
        f" Redis {e2e_environment['REDIS_URL']}"
    )
    assert log.count(line) == 1, log[-3000:]
    password = make_url(e2e_environment["DATABASE_URL"]).password
    assert not password or password not in log
    assert " alembic" not in log  # neither at start nor on /ready


def test_without_redis_the_relay_says_it_logged(tmp_path: Path) -> None:
    # A database of its own: the session's relay must keep the session's outbox.
    url = f"sqlite:///{tmp_path / 'relay.sqlite3'}"
    env = {"DATABASE_URL": url, "RELAY_POLL_MS": "100", "PATH": os.environ.get("PATH", "")}
    assert run_cli("migrate", env=env).returncode == 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO outbox (message_id, channel, sku, payload, occurred_at)"
                " VALUES ('m-1', 'out_of_stock', 'LAMP', '{\"sku\": \"LAMP\"}', '2026-01-01')"
            )
        )
    engine.dispose()
    relay = start_relay(env, tmp_path / "relay.log")
    try:
        assert "relaying the outbox to the log (REDIS_URL not set)" in relay.output()
        wait_until(
            "the relay to log the message",
            lambda: "logged 1 message(s): m-1" in relay.output() or None,
            timeout=20,
            detail=relay.tail,
        )
        assert "published 1" not in relay.output()
    finally:
        relay.stop()
