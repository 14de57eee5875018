"""The outbox relay process: publishes committed events to Redis until asked to stop."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Protocol

from allocation.config import Settings
from allocation.domain.exceptions import InfrastructureUnavailable
from allocation.service_layer import relay
from allocation.service_layer.messagebus import UnitOfWorkFactory
from allocation.service_layer.ports import AbstractPublisher

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 1.0
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
    backoff = 0.05
    next_prune = time.monotonic()
    logger.info("relaying the outbox")
    while not stop.is_set():
        try:
            sent = relay.relay_pending(uow_factory(), publisher, settings.relay_batch_size)
            if time.monotonic() >= next_prune:
                _prune(settings, uow_factory)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        except InfrastructureUnavailable as error:
            logger.warning("%s (%s); retrying in %.2fs", error, getattr(error, "detail", ""),
                           backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        except Exception:
            logger.exception("relay step failed; retrying in %.2fs", backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        backoff = 0.05
        if sent:
            logger.info("published %d message(s)", sent)
        if sent < settings.relay_batch_size:
            wakeup.wait(settings.relay_poll_seconds)
    wakeup.close()


def _prune(settings: Settings, uow_factory: UnitOfWorkFactory) -> None:
    pruned = relay.prune_sent(uow_factory(), timedelta(hours=settings.outbox_retention_hours))
    if pruned:
        logger.info("pruned %d sent message(s) older than %dh", pruned,
                    settings.outbox_retention_hours)
