"""The Redis consumer: applies change_batch_quantity messages from a channel and a stream.

The pub/sub channel is best effort (a message sent while nobody listens is gone);
the stream, read through a consumer group and acknowledged only after the change
commits, loses nothing while the consumer is down. Either way a message id that
was already applied is skipped, and a message that cannot be applied ends in the
dead letters instead of stopping the consumer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

import redis

from allocation.adapters import metrics
from allocation.config import Settings
from allocation.domain.exceptions import (
    AllocationError,
    ConcurrencyConflict,
    InfrastructureUnavailable,
)
from allocation.entrypoints import schemas
from allocation.service_layer import dead_letters, log_context
from allocation.service_layer.messagebus import MessageBus

logger = logging.getLogger(__name__)

CHANNEL = STREAM = "change_batch_quantity"
GROUP = "allocation"
MAX_BACKOFF_SECONDS = 2.0
_TRANSIENT = (InfrastructureUnavailable, ConcurrencyConflict)


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead-lettered"
    RETRY_LATER = "retry later"


class Rejected(Exception):
    """The message can never be applied as it is."""


Message = schemas.ChangeBatchQuantityMessage


def parse(data: bytes | str) -> Message:
    """The message, or Rejected naming what is wrong with it."""
    try:
        return schemas.parse(Message, data)
    except schemas.InvalidInput as error:
        raise Rejected(f"malformed: {error}") from None


def apply(bus: MessageBus, message: Message, fallback_id: str | None = None) -> bool:
    """Applies one parsed message; False if its id was applied before.

    Raises Rejected for a message that will never apply, and lets transient
    errors (database down, lost races) through so the caller can retry.
    """
    try:
        return bool(bus.handle(message.to_command(fallback_id)))
    except _TRANSIENT:
        raise
    except AllocationError as error:
        raise Rejected(str(error)) from None


class Processor:
    """Applies a message with bounded retries, dead-lettering what cannot be applied."""

    def __init__(self, bus: MessageBus, settings: Settings, stop: threading.Event) -> None:
        self._bus = bus
        self._attempts = settings.consumer_max_attempts
        self._stop = stop

    def process(self, data: bytes, source: str, fallback_id: str | None = None) -> Outcome:
        """Parses once, then applies with retries; every outcome is counted."""
        try:
            message = parse(data)
        except Rejected as rejected:
            with log_context.bound(message_id=fallback_id):
                outcome = self._dead_letter(data, source, str(rejected), fallback_id)
        else:
            with log_context.bound(message_id=message.message_id or fallback_id):
                outcome = self._apply(message, data, source, fallback_id)
        metrics.CONSUMER_MESSAGES.labels(outcome.value).inc()
        return outcome

    def _apply(
        self, message: Message, data: bytes, source: str, fallback_id: str | None
    ) -> Outcome:
        error: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                applied = apply(self._bus, message, fallback_id)
            except Rejected as rejected:
                return self._dead_letter(data, source, str(rejected), fallback_id)
            except Exception as failure:  # retried, then dead-lettered below
                error = failure
                logger.warning(
                    "attempt %d/%d of %s message %r failed: %s",
                    attempt,
                    self._attempts,
                    source,
                    data,
                    failure,
                )
                if self._stop.wait(min(0.1 * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)):
                    return Outcome.RETRY_LATER
                continue
            logger.info(
                "%s %s message %r", "applied" if applied else "skipped duplicate", source, data
            )
            return Outcome.APPLIED if applied else Outcome.DUPLICATE
        return self._dead_letter(
            data, source, f"failed {self._attempts} times: {error}", fallback_id
        )

    def _dead_letter(
        self, data: bytes, source: str, reason: str, message_id: str | None
    ) -> Outcome:
        payload = data.decode("utf-8", errors="replace")
        try:
            dead_letters.record(self._bus.uow_factory(), source, payload, reason, message_id)
        except Exception:
            logger.exception("could not dead-letter %s message %r (%s)", source, data, reason)
            return Outcome.RETRY_LATER
        logger.warning("dead-lettered %s message %r: %s", source, data, reason)
        return Outcome.DEAD_LETTERED


def run(bus: MessageBus, client: redis.Redis, settings: Settings, stop: threading.Event) -> None:
    """Consumes the channel and the stream until stop is set."""
    processor = Processor(bus, settings, stop)
    name = settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
    loops: list[Callable[[], None]] = [
        lambda: _consume_channel(client, processor, stop),
        lambda: _consume_stream(client, processor, settings, name, stop),
    ]
    threads = [
        threading.Thread(target=_reconnecting, args=(loop, stop), daemon=True) for loop in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _reconnecting(loop: Callable[[], None], stop: threading.Event) -> None:
    backoff = 0.1
    while not stop.is_set():
        try:
            loop()
            backoff = 0.1
        except (redis.ConnectionError, redis.TimeoutError) as error:
            logger.warning("lost Redis (%s); reconnecting in %.1fs", error, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _consume_channel(client: redis.Redis, processor: Processor, stop: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(CHANNEL)
        logger.info("listening on %s", CHANNEL)
        while not stop.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                processor.process(message["data"], f"channel:{CHANNEL}")
    finally:
        pubsub.close()


def _consume_stream(
    client: redis.Redis,
    processor: Processor,
    settings: Settings,
    name: str,
    stop: threading.Event,
) -> None:
    _ensure_group(client)
    logger.info("reading stream %s as %s/%s", STREAM, GROUP, name)
    # First whatever this consumer name left pending before a restart.
    _process_entries(client, processor, _read(client, name, "0"))
    while not stop.is_set():
        claimed: Any = client.xautoclaim(
            STREAM, GROUP, name, settings.consumer_claim_idle_ms, start_id="0-0", count=10
        )
        _process_entries(client, processor, claimed[1])
        _process_entries(client, processor, _read(client, name, ">", block_ms=1000))


def _ensure_group(client: redis.Redis) -> None:
    try:
        # From the stream's beginning: entries added before the group existed count too.
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _read(client: redis.Redis, name: str, start: str, block_ms: int | None = None) -> list[Any]:
    response: Any = client.xreadgroup(GROUP, name, {STREAM: start}, count=10, block=block_ms)
    return list(response[0][1]) if response else []


def _process_entries(client: redis.Redis, processor: Processor, entries: list[Any]) -> None:
    for entry_id, fields in entries:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        if not fields:  # trimmed away while pending
            client.xack(STREAM, GROUP, entry_id)
            continue
        data = fields.get(b"data", b"")
        outcome = processor.process(data, f"stream:{STREAM}", fallback_id=f"stream:{entry}")
        if outcome is not Outcome.RETRY_LATER:
            client.xack(STREAM, GROUP, entry_id)
