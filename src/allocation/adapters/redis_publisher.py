"""Publishers: events as JSON on Redis channels, or into the log when Redis is not configured."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import redis

from allocation.service_layer.ports import AbstractPublisher

logger = logging.getLogger(__name__)


class RedisPublisher(AbstractPublisher):
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        self._client.publish(channel, json.dumps(payload, default=str))


class LoggingPublisher(AbstractPublisher):
    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        logger.info("event on %s (REDIS_URL not set, not published): %s", channel,
                    json.dumps(payload, default=str))
