"""The Redis consumer: applies change_batch_quantity messages from a channel and a stream.

The pub/sub channel is best effort (a message sent while nobody listens is gone);
the stream, read through a consumer group and acknowledged only after the change
commits, loses nothing while the consumer is down. Either way a message id that
was already applied is skipped, and a message that cannot be applied ends in the
dead letters instead of stopping the consumer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import redis

from allocation.adapters import failover, metrics
from allocation.config import Settings
from allocation.service_layer import retry
from allocation.service_layer.inbound import Inbox, Outcome
from allocation.service_layer.messages import INBOUND_CHANNEL

logger = logging.getLogger(__name__)

CHANNEL = STREAM = INBOUND_CHANNEL
GROUP = "allocation"


def run(inbox: Inbox, client: redis.Redis, settings: Settings) -> None:
    """Consumes the channel and the stream until the inbox's stop is set."""
    stop = inbox.stop
    name = settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
    loops: list[Callable[[], None]] = [
        lambda: _consume_channel(client, inbox, stop),
        lambda: _consume_stream(client, inbox, settings, name, stop),
    ]
    threads = [
        threading.Thread(target=_reconnecting, args=(loop, stop), daemon=True) for loop in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _reconnecting(loop: Callable[[], None], stop: threading.Event) -> None:
    """Runs the loop until stop is set, reconnecting with backoff when Redis goes away."""

    def log_reconnect(state: retry.RetryCallState) -> None:
        metrics.REDIS_RECONNECTS.inc()
        logger.warning(
            "lost Redis (%s); reconnecting in %.1fs", retry.failure(state), retry.next_wait(state)
        )

    # At most a second between tries: a Redis master promoted by the Sentinels is
    # used within about a second of its promotion.
    policy = retry.policy(
        (redis.ConnectionError, redis.TimeoutError),
        attempts=None,
        first_wait=0.1,
        max_wait=1.0,
        stop=stop,
        before_sleep=log_reconnect,
    )
    with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
        policy(loop)  # raises only once stop was set while Redis was away


def _consume_channel(client: redis.Redis, inbox: Inbox, stop: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(CHANNEL)
        logger.info("listening on %s", CHANNEL)
        while not stop.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                _counted(inbox.process(message["data"], f"channel:{CHANNEL}"))
    finally:
        pubsub.close()


def _consume_stream(
    client: redis.Redis,
    inbox: Inbox,
    settings: Settings,
    name: str,
    stop: threading.Event,
) -> None:
    _ensure_group(client)
    failover.note_redis_master(client)
    logger.info("reading stream %s as %s/%s", STREAM, GROUP, name)
    # First whatever this consumer name left pending before a restart.
    _process_entries(client, inbox, _read(client, name, "0"))
    while not stop.is_set():
        claimed: Any = client.xautoclaim(
            STREAM, GROUP, name, settings.consumer_claim_idle_ms, start_id="0-0", count=10
        )
        _process_entries(client, inbox, claimed[1])
        _process_entries(client, inbox, _read(client, name, ">", block_ms=1000))


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


def _process_entries(client: redis.Redis, inbox: Inbox, entries: list[Any]) -> None:
    for entry_id, fields in entries:
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        if not fields:  # trimmed away while pending
            client.xack(STREAM, GROUP, entry_id)
            continue
        data = fields.get(b"data", b"")
        outcome = _counted(
            inbox.process(
                data, f"stream:{STREAM}", fallback_id=f"stream:{entry}", stream_entry=entry
            )
        )
        if outcome is not Outcome.RETRY_LATER:
            client.xack(STREAM, GROUP, entry_id)


def _counted(outcome: Outcome) -> Outcome:
    """The outcome, counted for /metrics."""
    metrics.CONSUMER_MESSAGES.labels(outcome.value).inc()
    return outcome
