"""The hold-expiry worker: gives back the units of holds whose time is up, until stopped.

It looks every ``HOLD_EXPIRY_POLL_MS`` (half a second by default), so a hold stops
counting within about that of its ``expires_at``; no request can confirm, extend or
release a hold past it meanwhile. Several may run: each hold is expired once.
"""

from __future__ import annotations

import logging
import threading

from allocation.adapters import metrics
from allocation.config import Settings
from allocation.service_layer import retry, stock
from allocation.service_layer.handlers import Clock
from allocation.service_layer.messagebus import MessageBus

logger = logging.getLogger(__name__)


def run(bus: MessageBus, clock: Clock, settings: Settings, stop: threading.Event) -> None:
    """Expires due holds every poll until stop is set; a round in hand is finished first."""
    logger.info("expiring holds every %dms", settings.hold_expiry_poll_ms)
    retrying = retry.until_stopped(stop, logger, "expiring holds")
    while not stop.is_set():
        try:
            expired = retrying(stock.expire_due_holds, bus, bus.uow_factory, clock)
        except Exception:  # only once stop is set: the policy retries everything until then
            break
        if expired:
            logger.info("expired %d hold(s)", expired)
            metrics.HOLDS_EXPIRED.inc(expired)
        stop.wait(settings.hold_expiry_poll_ms / 1000)
