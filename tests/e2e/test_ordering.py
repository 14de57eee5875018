"""Two consumers, one batch, many changes: the last change wins, whoever reads which."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devtools.servers import free_port
from tests.e2e.conftest import Service, start_consumer, unique
from tests.e2e.test_api import add_batch
from tests.e2e.test_consumer import consumer_metric, purchased_quantity
from tests.waiting import wait_until

CHANGES = range(11, 51)  # 40 changes of one batch, the last one 50
OUTCOMES = ("applied", "duplicate", "stale", "dead-lettered", "retry later")


@pytest.fixture
def second_consumer(
    e2e_environment: dict[str, str], consumer: Service, tmp_path: Path
) -> Iterator[Service]:
    """Another consumer process beside the session's, in the same consumer group."""
    env = {**e2e_environment, "CONSUMER_NAME": unique("second")}
    service = start_consumer(env, tmp_path / "second-consumer.log", metrics_port=free_port())
    yield service
    assert service.stop() == 0, service.output()[-2000:]


def handled(consumer: Service) -> float:
    """Every message the consumer finished with, whatever became of it."""
    return sum(consumer_metric(consumer, outcome) for outcome in OUTCOMES)


def test_stream_changes_read_by_two_consumers_end_at_the_last(
    api: Service,
    consumer: Service,
    second_consumer: Service,
    publisher: redis.Redis,
    e2e_environment: dict[str, str],
) -> None:
    for _round in range(3):
        ref = unique("batch")
        add_batch(api, ref, unique("sku"), 10)
        target = handled(consumer) + handled(second_consumer) + len(CHANGES)
        for qty in CHANGES:  # no position of their own: the stream entry ids order them
            entry = {"data": json.dumps({"batchref": ref, "qty": qty})}
            publisher.xadd("change_batch_quantity", entry)  # type: ignore[arg-type]
        wait_until(
            "both consumers to finish the 40 entries",
            lambda target=target: handled(consumer) + handled(second_consumer) >= target,
            timeout=30,
            interval=0.1,
        )
        assert purchased_quantity(e2e_environment["DATABASE_URL"], ref) == CHANGES[-1]


def test_channel_changes_heard_by_two_consumers_end_at_the_last(
    api: Service,
    consumer: Service,
    second_consumer: Service,
    publisher: redis.Redis,
    e2e_environment: dict[str, str],
) -> None:
    """Every subscriber hears every channel message: the producer's sequence orders them."""
    ref = unique("batch")
    add_batch(api, ref, unique("sku"), 10)
    before = handled(consumer) + handled(second_consumer)
    for sequence, qty in enumerate(CHANGES):
        message = {"batchref": ref, "qty": qty, "sequence": sequence}
        publisher.publish("change_batch_quantity", json.dumps(message))
    wait_until(
        "both consumers to finish the 40 messages each",
        lambda: handled(consumer) + handled(second_consumer) - before >= 2 * len(CHANGES),
        timeout=30,
        interval=0.1,
    )
    assert purchased_quantity(e2e_environment["DATABASE_URL"], ref) == CHANGES[-1]
    assert "stale" in consumer.output() + second_consumer.output()
