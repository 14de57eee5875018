"""The Redis consumer: turns change_batch_quantity messages into commands, one at a time."""

from __future__ import annotations

import logging
import threading
import time

import redis

from allocation.domain.exceptions import AllocationError
from allocation.entrypoints import schemas
from allocation.service_layer.messagebus import MessageBus

logger = logging.getLogger(__name__)

CHANNEL = "change_batch_quantity"
MAX_BACKOFF_SECONDS = 5.0


def run(bus: MessageBus, client: redis.Redis, stop: threading.Event) -> None:
    """Consumes until stop is set, reconnecting with backoff whenever Redis goes away."""
    backoff = 0.1
    while not stop.is_set():
        try:
            _consume(bus, client, stop)
        except redis.ConnectionError as error:
            logger.warning("lost Redis (%s); reconnecting in %.1fs", error, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        else:
            backoff = 0.1


def _consume(bus: MessageBus, client: redis.Redis, stop: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(CHANNEL)
        logger.info("listening on %s", CHANNEL)
        while not stop.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                handle_message(bus, message["data"])
    finally:
        pubsub.close()


def handle_message(bus: MessageBus, data: bytes | str) -> bool:
    """Applies one message; logs and skips it if it is malformed or cannot be applied."""
    started = time.perf_counter()
    try:
        cmd = schemas.parse(schemas.ChangeBatchQuantityMessage, data).to_command()
    except schemas.InvalidInput as error:
        logger.warning("skipped malformed %s message %r: %s", CHANNEL, data, error)
        return False
    try:
        bus.handle(cmd)
    except AllocationError as error:
        logger.warning("skipped %s message %r: %s", CHANNEL, data, error)
        return False
    except Exception:
        logger.exception("failed to apply %s message %r", CHANNEL, data)
        return False
    logger.info("applied %r in %.1f ms", cmd, (time.perf_counter() - started) * 1000)
    return True
