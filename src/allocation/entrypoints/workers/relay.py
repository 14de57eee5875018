"""The outbox relay process: publishes committed events to Redis until asked to stop."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Protocol

from allocation.adapters import metrics
from allocation.config import Settings
from allocation.service_layer import log_context, relay, retry
from allocation.service_layer.messagebus import UnitOfWorkFactory
from allocation.service_layer.ports import AbstractPublisher

logger = logging.getLogger(__name__)

# Short: a database or Redis promoted after a failover is used within half a second.
MAX_BACKOFF_SECONDS = 0.5
PRUNE_EVERY_SECONDS = 600.0


class Wakeup(Protocol):
    def wait(self, timeout: float) -> None: ...

    def close(self) -> None: ...


def run(
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    publisher: AbstractPublisher,
    wakeup: Wakeup,
    stop: threading.Event,
) -> None:
    """Relays until stop is set; a batch in hand is finished before stopping."""
    next_prune = time.monotonic()
    where = "Redis" if publisher.delivery == "published" else "the log (REDIS_URL not set)"
    logger.info("relaying the outbox to %s", where)
    retrying = retry.until_stopped(stop, logger, "relay step", MAX_BACKOFF_SECONDS)
    while not stop.is_set():
        try:
            sent = retrying(_relay_batch, uow_factory, publisher, settings.relay_batch_size)
            if time.monotonic() >= next_prune:
                retrying(_prune, settings, uow_factory)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        except Exception:  # only once stop is set: the policy retries everything until then
            break
        metrics.RELAY_PUBLISHED.inc(len(sent))
        if len(sent) < settings.relay_batch_size:
            wakeup.wait(settings.relay_poll_seconds)
            # Let the commits that follow the first one join its batch: one round trip
            # per few messages instead of one per message, for a few ms of latency.
            stop.wait(settings.relay_linger_seconds)
    wakeup.close()


def _relay_batch(
    uow_factory: UnitOfWorkFactory, publisher: AbstractPublisher, batch_size: int
) -> list[str]:
    message_ids = relay.relay_pending(uow_factory(), publisher, batch_size)
    for message_id in message_ids:
        with log_context.bound(message_id=message_id):
            logger.debug(publisher.delivery)
    if message_ids:
        shown = ", ".join(message_ids[:3]) + (", …" if len(message_ids) > 3 else "")
        logger.info("%s %d message(s): %s", publisher.delivery, len(message_ids), shown)
    return message_ids


def _prune(settings: Settings, uow_factory: UnitOfWorkFactory) -> None:
    pruned = relay.prune_sent(uow_factory(), timedelta(hours=settings.outbox_retention_hours))
    if pruned:
        logger.info(
            "pruned %d sent message(s) older than %dh", pruned, settings.outbox_retention_hours
        )
