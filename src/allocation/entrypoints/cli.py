"""The `allocation` command: migrate the database, serve the API, run the Redis consumer."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

import click
import redis

from allocation import __version__, bootstrap
from allocation.config import ConfigError, Settings

logger = logging.getLogger("allocation")


def _settings() -> Settings:
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="allocation")
def main() -> None:
    """Stock allocation service. Configured by environment variables (see README)."""


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run twice)."""
    settings = _settings()
    bootstrap.migrate(settings)
    click.echo("database schema is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5005, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="gunicorn worker processes (one per core is a good start).")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker.")
def api(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn."""
    from allocation.entrypoints.server import serve

    serve(_settings(), host, port, workers, threads)


@main.command()
def consumer() -> None:
    """Apply change_batch_quantity messages from Redis (needs REDIS_URL)."""
    from allocation.entrypoints import redis_consumer

    settings = _settings()
    if settings.redis_url is None:
        raise click.UsageError("the consumer needs Redis: set REDIS_URL, e.g. redis://localhost:6379/0")
    bus = bootstrap.bootstrap(settings)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    redis_consumer.run(bus, redis.Redis.from_url(settings.redis_url), stop)
    logger.info("consumer stopped")
