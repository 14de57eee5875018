"""Publishers: events as JSON on Redis channels, or into the log when Redis is not configured."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from allocation.domain.exceptions import BrokerUnavailable
from allocation.service_layer.ports import AbstractPublisher

logger = logging.getLogger(__name__)


class RedisPublisher(AbstractPublisher):
    """Each message goes to the pub/sub channel (live subscribers) and to a stream of
    the same name (subscribers that must not miss one, even across Redis restarts)."""

    def __init__(self, client: redis.Redis, stream_maxlen: int = 100_000) -> None:
        self._client = client
        self._stream_maxlen = stream_maxlen

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        self.publish_batch([(channel, payload)])

    def publish_batch(self, messages: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for channel, payload in messages:
            data = json.dumps(payload, default=str)
            pipe.publish(channel, data)
            pipe.xadd(channel, {"data": data}, maxlen=self._stream_maxlen, approximate=True)
        try:
            pipe.execute()
        except redis.RedisError as error:
            raise BrokerUnavailable(str(error)) from error


class LoggingPublisher(AbstractPublisher):
    """Without Redis: each event is a log line, and nothing is published."""

    delivery = "logged"

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        logger.info(
            "event on %s (REDIS_URL not set, not published): %s",
            channel,
            json.dumps(payload, default=str),
        )
