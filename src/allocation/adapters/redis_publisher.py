"""Publishers: events as JSON on Redis channels, or into the log when Redis is not configured."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from allocation.adapters import failover, metrics
from allocation.domain.exceptions import BrokerUnavailable, PublishUnconfirmed
from allocation.service_layer.ports import AbstractPublisher

logger = logging.getLogger(__name__)


class RedisPublisher(AbstractPublisher):
    """Each message goes to the pub/sub channel (live subscribers) and to a stream of
    the same name (subscribers that must not miss one, even across Redis restarts).

    Redis replicates asynchronously: a master that dies loses what its replicas had
    not received yet. So while the master has a replica, a batch counts as published
    only once one confirms having it (WAIT, bounded by ``replica_wait_ms``), and is
    published again otherwise. With no replica connected (one Redis, or a master
    just promoted whose old master has not rejoined) there is nothing to wait for:
    the batch is published as with one Redis, and counted as unconfirmed.

    One round trip per batch: the commands, then ROLE (how many replicas the master
    has now) and, when the last ROLE said there were some, WAIT, on the connection
    that sent the commands (WAIT counts what that connection wrote).
    """

    def __init__(
        self, client: redis.Redis, stream_maxlen: int = 100_000, replica_wait_ms: int = 1000
    ) -> None:
        self._client = client
        self._stream_maxlen = stream_maxlen
        self._replica_wait_ms = replica_wait_ms
        # Replicas as the last ROLE said; None: not known (at start, after a lost connection).
        self._replicas: int | None = None
        self._unconfirmed: bool | None = None  # what the log said last

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        self.publish_batch([(channel, payload)])

    def publish_batch(self, messages: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        try:
            if self._replicas is None:
                self._replicas = _replicas(self._client.role())
            confirm = self._replicas > 0
            replies = self._send(messages, confirm)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._replicas = None  # another master, maybe: ask it first
            metrics.REDIS_RECONNECTS.inc()
            raise BrokerUnavailable(str(error)) from error
        except redis.RedisError as error:
            raise BrokerUnavailable(str(error)) from error
        failover.note_redis_master(self._client)
        role = replies[-2] if confirm else replies[-1]
        self._check_confirmed(_replicas(role), replies[-1] if confirm else None, len(messages))

    def _send(self, messages: Sequence[tuple[str, Mapping[str, Any]]], confirm: bool) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for channel, payload in messages:
            data = json.dumps(payload, default=str)
            pipe.publish(channel, data)
            pipe.xadd(channel, {"data": data}, maxlen=self._stream_maxlen, approximate=True)
        pipe.role()
        if confirm:
            pipe.wait(1, self._replica_wait_ms)
        return pipe.execute()

    def _check_confirmed(self, replicas: int, acknowledged: int | None, count: int) -> None:
        """Raises PublishUnconfirmed unless a replica confirmed the batch or there was
        no replica to confirm it."""
        self._replicas = replicas
        metrics.RELAY_REPLICAS.set(replicas)
        self._say_whether_confirming(replicas)
        if replicas == 0:
            metrics.RELAY_UNCONFIRMED.inc(count)
        elif acknowledged is None:
            raise PublishUnconfirmed("a replica connected meanwhile: publishing again for it")
        elif acknowledged < 1:
            raise PublishUnconfirmed(f"none confirmed within {self._replica_wait_ms} ms")

    def _say_whether_confirming(self, replicas: int) -> None:
        """Once per change, in the log: whether batches wait for a replica."""
        unconfirmed = replicas == 0
        if unconfirmed == self._unconfirmed:
            return
        if not unconfirmed:
            logger.info("the Redis master has %d replica(s): each batch waits for one", replicas)
        elif self._unconfirmed is None:  # at start: one Redis, most likely by design
            logger.info("the Redis master has no replica: messages are published unconfirmed")
        else:
            logger.warning(
                "the Redis master has no replica connected now: messages are published"
                " unconfirmed, as to a single Redis, until one connects"
            )
        self._unconfirmed = unconfirmed


def _replicas(role: Any) -> int:
    """The replicas a master's ROLE reply lists (a replica's reply lists none)."""
    return len(role[2]) if role and role[0] in (b"master", "master") else 0


class LoggingPublisher(AbstractPublisher):
    """Without Redis: each event is a log line, and nothing is published."""

    delivery = "logged"

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        logger.info(
            "event on %s (REDIS_URL not set, not published): %s",
            channel,
            json.dumps(payload, default=str),
        )
