"""The `allocation` command: every process and operation of the service."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from types import FrameType
from typing import Any, TypeVar

import click

from allocation import __version__, bootstrap
from allocation.config import ConfigError, Settings
from allocation.domain.exceptions import InfrastructureUnavailable, SchemaNotMigrated
from allocation.entrypoints.cli import logging_config, server, supervisor
from allocation.entrypoints.workers import consumer as consumer_process
from allocation.entrypoints.workers import hold_expiry as hold_expiry_process
from allocation.entrypoints.workers import messages
from allocation.entrypoints.workers import relay as relay_process
from allocation.service_layer import dead_letters, read_model, stock
from allocation.service_layer import relay as outbox_relay
from allocation.service_layer.inbound import Outcome, Rejected
from allocation.service_layer.messagebus import UnitOfWorkFactory
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

logger = logging.getLogger("allocation")

F = TypeVar("F", bound=Callable[..., Any])


class BadEnvironment(click.ClickException):
    """A malformed setting: one line naming the variable, exit status 2 like a usage
    error, but no usage hint (the environment is wrong, not the command line)."""

    exit_code = 2


def _settings() -> Settings:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        raise BadEnvironment(str(error)) from None
    logging_config.configure(settings.log_level, settings.log_format)
    return settings


def _migrated_settings() -> Settings:
    """The settings, once the database they name is known to be migrated: a command
    never works on (or creates) a database whose schema is not this code's."""
    settings = _settings()
    bootstrap.require_migrated(settings)
    return settings


def _uow_factory() -> UnitOfWorkFactory:
    """Units of Work on the configured database, once it is known to be migrated. An
    operator's commands read whole tables (reports, rebuilds) on short-lived
    connections, so they plan their statements freely (no ``by_key``)."""
    return bootstrap.make_uow_factory(_migrated_settings(), by_key=False)


def _unit_of_work() -> AbstractUnitOfWork:
    return _uow_factory()()


def _one_line_errors(command: F) -> F:
    """An unreachable database or Redis is one clear line and exit status 1, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SchemaNotMigrated as error:
            raise click.ClickException(error.explained) from None
        except InfrastructureUnavailable as error:
            detail = str(getattr(error, "detail", "")).strip().splitlines()
            raise click.ClickException(f"{error} ({detail[0]})" if detail else str(error)) from None

    return wrapper  # type: ignore[return-value]


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="allocation")
def main() -> None:
    """Stock allocation service. Configured by environment variables (see README)."""


@main.command(short_help="Create or upgrade the database schema.")
@_one_line_errors
def migrate() -> None:
    """Create or upgrade the database schema (safe to run twice)."""

    settings = _settings()
    # Each revision applied is worth a line here (elsewhere Alembic is kept quiet).
    migration_log = logging.getLogger("alembic.runtime.migration")
    migration_log.setLevel(logging.INFO)
    try:
        bootstrap.migrate(settings)
    finally:
        migration_log.setLevel(logging.NOTSET)
    click.echo("database schema is up to date")


_host = click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
_port = click.option(
    "--port",
    default=5005,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)


@main.command()
@_host
@_port
@click.option(
    "--workers",
    default=server.default_workers,
    show_default="2 per CPU",
    type=click.IntRange(1, 64),
    help="Worker processes, each with its own interpreter (no GIL shared between them).",
)
@click.option(
    "--threads",
    default=server.DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Requests each worker handles at once; more wait in the server's queue.",
)
def api(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API with granian."""
    server.serve(_settings(), host, port, workers, threads)


@main.command(short_help="Run the API, the relay and (with REDIS_URL) the consumer.")
@_host
@_port
def run(host: str, port: int) -> None:
    """Run the API, the relay and, when REDIS_URL is set, the consumer, as one unit
    (run `allocation migrate` first). When any of them exits, the others are stopped
    and the exit status is its own (1 if it was 0); SIGTERM, SIGINT or SIGHUP stop
    them all (SIGKILL after a few seconds) and the exit status is 0."""

    settings = _settings()
    programs = supervisor.service_programs(host, port, settings.redis_url is not None)
    raise SystemExit(supervisor.supervise(programs))


_metrics_port = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve Prometheus metrics of this process on this port.",
)


def _serve_metrics(port: int | None) -> None:
    if port is not None:
        from prometheus_client import start_http_server

        start_http_server(port)


@main.command(short_help="Apply change_batch_quantity messages from Redis.")
@_metrics_port
@_one_line_errors
def consumer(metrics_port: int | None) -> None:
    """Apply change_batch_quantity messages from Redis (channel and stream; needs REDIS_URL)."""

    settings = _migrated_settings()
    _serve_metrics(metrics_port)
    if settings.redis_url is None:
        raise click.UsageError(
            "the consumer needs Redis: set REDIS_URL, e.g. redis://localhost:6379/0"
        )
    inbox = bootstrap.inbox(settings, messages.parse_change_batch_quantity, _stop_on_signals())
    consumer_process.run(inbox, bootstrap.make_redis(settings.redis_url), settings)
    logger.info("consumer stopped")


@main.command(short_help="Publish the outbox to Redis.")
@_metrics_port
@_one_line_errors
def relay(metrics_port: int | None) -> None:
    """Publish committed events from the outbox to Redis (logs them without REDIS_URL)."""

    settings = _migrated_settings()
    _serve_metrics(metrics_port)
    stop = _stop_on_signals()
    uow_factory, wakeup = bootstrap.relay_parts(settings, stop)
    relay_process.run(settings, uow_factory, bootstrap.make_publisher(settings), wakeup, stop)
    logger.info("relay stopped")


@main.command("hold-expiry", short_help="Give back the units of holds whose time is up.")
@_metrics_port
@_one_line_errors
def hold_expiry(metrics_port: int | None) -> None:
    """Expire holds past their expires_at, every HOLD_EXPIRY_POLL_MS (several may run:
    each hold is expired once)."""

    settings = _migrated_settings()
    _serve_metrics(metrics_port)
    stop = _stop_on_signals()
    hold_expiry_process.run(bootstrap.bootstrap(settings), bootstrap.utc_now, settings, stop)
    logger.info("hold expiry stopped")


@main.command(short_help="Show the outbox backlog.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_one_line_errors
def outbox(as_json: bool) -> None:
    """Show the outbox backlog: unsent messages and the age of the oldest."""

    backlog = outbox_relay.backlog(_unit_of_work())
    age = None if backlog.oldest is None else (datetime.now(UTC) - backlog.oldest).total_seconds()
    if as_json:
        click.echo(json.dumps({"unsent": backlog.unsent, "oldest_age_seconds": age}))
    elif age is None:
        click.echo("unsent: 0")
    else:
        click.echo(f"unsent: {backlog.unsent}, oldest: {age:.1f}s ago")


@main.group("dead-letters", short_help="List and re-drive messages that could not apply.")
def dead_letters_group() -> None:
    """List and re-drive inbound messages that could not be applied."""


@dead_letters_group.command("list")
@click.option("--all", "include_redriven", is_flag=True, help="Include re-driven ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
@_one_line_errors
def dead_letters_list(include_redriven: bool, as_json: bool) -> None:
    """List dead letters, oldest first."""

    letters = dead_letters.listing(_unit_of_work(), include_redriven)
    if not letters and not as_json:
        click.echo("no dead letters" + ("" if include_redriven else " (--all: re-driven ones too)"))
    for letter in letters:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": letter.id,
                        "source": letter.source,
                        "payload": letter.payload,
                        "error": letter.error,
                        "message_id": letter.message_id,
                        "created_at": letter.created_at.isoformat(),
                        "redriven_at": letter.redriven_at.isoformat()
                        if letter.redriven_at
                        else None,
                    }
                )
            )
        else:
            click.echo(
                f"{letter.id}\t{letter.created_at:%Y-%m-%d %H:%M:%S}\t{letter.source}\t"
                f"{letter.payload!r}\t{letter.error}"
            )


@dead_letters_group.command("redrive", short_help="Apply a dead letter again.")
@click.argument("letter_id", type=int)
@_one_line_errors
def dead_letters_redrive(letter_id: int) -> None:
    """Apply dead letter LETTER_ID again; it is marked re-driven if that works."""

    inbox = bootstrap.inbox(
        _migrated_settings(), messages.parse_change_batch_quantity, threading.Event()
    )
    try:
        outcome = inbox.redrive(letter_id)
    except Rejected as error:
        raise click.ClickException(str(error)) from None
    done = {
        Outcome.APPLIED: "applied",
        Outcome.DUPLICATE: "was already applied",
        Outcome.STALE: "is older than the batch's last change: recorded, not applied",
    }[outcome]
    click.echo(f"dead letter {letter_id} {done}")


@main.command("check-movements", short_help="Check each SKU's movements against its stock.")
@click.option("--sku", default=None, help="Check only this SKU.")
@_one_line_errors
def check_movements(sku: str | None) -> None:
    """Recompute each SKU's sum of stock movements and compare it with its available
    stock; print every SKU that disagrees and exit 1 if any does."""

    check = stock.check_movements(_uow_factory(), sku)
    if sku is not None and check.checked == 0:
        raise click.ClickException(f"unknown SKU {sku}")
    for disagreement in check.disagreements:
        click.echo(str(disagreement))
    if check.disagreements:
        raise SystemExit(1)
    click.echo(f"checked {check.checked} SKU(s): every one's movements add up to its stock")


@main.command("rebuild-views", short_help="Rebuild the read models from the write model.")
@_one_line_errors
def rebuild_views() -> None:
    """Rebuild allocations_view and availability_view from the batches, allocations
    and backorders, in one transaction, and report what was corrected."""

    report = read_model.rebuild_views(_unit_of_work())
    click.echo(f"allocations_view: {report.allocations}")
    click.echo(f"availability_view: {report.availability}")
