"""Inbound messages through the real consumer process: reallocation, idempotency, dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text

from devtools.servers import RedisServer
from tests.e2e.conftest import Service, metric_total, run_cli, start_consumer, unique
from tests.e2e.test_api import Subscriber, add_batch, allocate
from tests.waiting import wait_until


def wait_for_view(api: Service, orderid: str, expected: list[dict[str, str]]) -> None:
    def shown() -> bool:
        response = requests.get(f"{api.url}/allocations/{orderid}", timeout=10)
        return response.status_code == 200 and response.json() == expected

    wait_until(f"the view of {orderid} to become {expected}", shown, timeout=10, interval=0.1)


def purchased_quantity(database_url: str, ref: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT purchased_quantity FROM batches WHERE reference = :ref"),
                    {"ref": ref},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def wait_for_quantity(database_url: str, ref: str, qty: int, timeout: float = 10) -> None:
    wait_until(
        f"{ref} to get qty {qty}",
        lambda: purchased_quantity(database_url, ref) == qty,
        timeout,
        interval=0.1,
        detail=lambda: f"it has {purchased_quantity(database_url, ref)}",
    )


def pending(client: redis.Redis) -> int:
    """Entries of change_batch_quantity read by the consumer group but not acknowledged."""
    return int(client.xpending("change_batch_quantity", "allocation")["pending"])


def dead_letters(env: dict[str, str]) -> list[dict[str, object]]:
    output = run_cli("dead-letters", "list", "--json", env=env).stdout
    return [json.loads(line) for line in output.splitlines()]


def test_change_batch_quantity_reallocates_and_publishes(
    api: Service, consumer: Service, redis_url: str, publisher: redis.Redis
) -> None:
    sku, orderid = unique("sku"), unique("order")
    earlier, later = unique("batch1"), unique("batch2")
    add_batch(api, earlier, sku, 10, "2031-01-01")
    add_batch(api, later, sku, 10, "2031-01-02")
    assert allocate(api, orderid, sku, 10).json() == {"batchref": earlier}
    subscriber = Subscriber(redis_url, "line_allocated")
    try:
        publisher.publish("change_batch_quantity", json.dumps({"batchref": earlier, "qty": 5}))
        # The first allocation's own message may still be on its way: match the new batch.
        message = subscriber.wait_for("line_allocated", {"orderid": orderid, "batchref": later})
    finally:
        subscriber.close()

    assert {k: message[k] for k in ("orderid", "sku", "qty", "batchref")} == {
        "orderid": orderid,
        "sku": sku,
        "qty": 10,
        "batchref": later,
    }
    assert set(message) >= {"message_id", "occurred_at"}
    wait_for_view(api, orderid, [{"sku": sku, "batchref": later}])


def test_bad_messages_are_dead_lettered_and_the_next_one_applies(
    api: Service, consumer: Service, publisher: redis.Redis, e2e_environment: dict[str, str]
) -> None:
    ref, unknown = unique("batch"), unique("unknown")
    add_batch(api, ref, unique("sku"), 10)
    bad = [
        b"{nope",
        json.dumps({"qty": 3}).encode(),
        json.dumps({"batchref": ref, "qty": "3"}).encode(),
        json.dumps({"batchref": unknown, "qty": 3}).encode(),
    ]
    for payload in bad:
        publisher.publish("change_batch_quantity", payload)
    publisher.publish("change_batch_quantity", json.dumps({"batchref": ref, "qty": 3}))

    wait_for_quantity(e2e_environment["DATABASE_URL"], ref, 3)
    letters = {letter["payload"]: letter for letter in dead_letters(e2e_environment)}
    for payload in bad:
        assert payload.decode() in letters, (payload, letters)
    assert "Unknown batch" in str(letters[bad[3].decode()]["error"])
    assert "qty: Input should be a valid integer" in str(letters[bad[2].decode()]["error"])


def test_the_same_message_id_three_times_changes_the_batch_once(
    api: Service, consumer: Service, publisher: redis.Redis, e2e_environment: dict[str, str]
) -> None:
    ref, first_id = unique("batch"), unique("msg")
    add_batch(api, ref, unique("sku"), 10)
    database_url = e2e_environment["DATABASE_URL"]

    publisher.publish(
        "change_batch_quantity", json.dumps({"batchref": ref, "qty": 5, "message_id": first_id})
    )
    wait_for_quantity(database_url, ref, 5)
    publisher.publish(
        "change_batch_quantity",
        json.dumps({"batchref": ref, "qty": 8, "message_id": unique("msg")}),
    )
    wait_for_quantity(database_url, ref, 8)
    for _ in range(2):  # redeliveries of the first message must not undo the second
        publisher.publish(
            "change_batch_quantity", json.dumps({"batchref": ref, "qty": 5, "message_id": first_id})
        )
    wait_until(
        f"the consumer to log {first_id} three times",
        lambda: consumer.output().count(first_id) >= 3,
        detail=consumer.tail,
    )
    assert purchased_quantity(database_url, ref) == 8
    assert consumer.output().count("skipped duplicate") >= 2


def test_a_stream_entry_added_while_the_consumer_is_down_is_applied_when_it_starts(
    api: Service, e2e_environment: dict[str, str], tmp_path: Path
) -> None:
    ref = unique("batch")
    add_batch(api, ref, unique("sku"), 10)
    with RedisServer() as own_redis:  # no consumer is reading this Redis yet
        env = {**e2e_environment, "REDIS_URL": own_redis.url}
        client = redis.Redis.from_url(own_redis.url)
        client.xadd("change_batch_quantity", {"data": json.dumps({"batchref": ref, "qty": 4})})

        consumer = start_consumer(env, tmp_path / "consumer.log")
        try:
            wait_for_quantity(env["DATABASE_URL"], ref, 4)
            wait_until("the entry acknowledged", lambda: not pending(client), detail=consumer.tail)
        finally:
            assert consumer.stop() == 0
            client.close()


def test_pending_entries_of_a_crashed_consumer_are_claimed(
    api: Service, e2e_environment: dict[str, str], tmp_path: Path
) -> None:
    ref = unique("batch")
    add_batch(api, ref, unique("sku"), 10)
    with RedisServer() as own_redis:
        env = {**e2e_environment, "REDIS_URL": own_redis.url}
        client = redis.Redis.from_url(own_redis.url)
        client.xgroup_create("change_batch_quantity", "allocation", id="0", mkstream=True)
        client.xadd("change_batch_quantity", {"data": json.dumps({"batchref": ref, "qty": 6})})
        # A consumer that read the entry and died before acknowledging it:
        client.xreadgroup("allocation", "crashed-consumer", {"change_batch_quantity": ">"}, count=1)
        assert client.xpending("change_batch_quantity", "allocation")["pending"] == 1

        consumer = start_consumer(env, tmp_path / "consumer.log")
        try:
            wait_for_quantity(env["DATABASE_URL"], ref, 6, timeout=15)
            wait_until(
                "the claimed entry acknowledged", lambda: not pending(client), detail=consumer.tail
            )
        finally:
            assert consumer.stop() == 0
            client.close()


def test_a_dead_letter_is_redriven_once_its_cause_is_fixed(
    api: Service, consumer: Service, publisher: redis.Redis, e2e_environment: dict[str, str]
) -> None:
    ref, sku = unique("late-batch"), unique("sku")
    payload = json.dumps({"batchref": ref, "qty": 3, "message_id": unique("msg")})
    publisher.publish("change_batch_quantity", payload)  # the batch does not exist yet

    def its_letters() -> list[dict[str, object]] | None:
        return [d for d in dead_letters(e2e_environment) if d["payload"] == payload] or None

    [letter] = wait_until("the message dead-lettered", its_letters, interval=0.1)

    add_batch(api, ref, sku, 10)
    redrive = run_cli("dead-letters", "redrive", str(letter["id"]), env=e2e_environment)

    assert redrive.returncode == 0, redrive.stderr
    assert redrive.stdout.strip() == f"dead letter {letter['id']} applied"
    assert purchased_quantity(e2e_environment["DATABASE_URL"], ref) == 3
    assert payload not in [d["payload"] for d in dead_letters(e2e_environment)]
    again = run_cli("dead-letters", "redrive", str(letter["id"]), env=e2e_environment)
    assert again.returncode == 1
    assert "already re-driven" in again.stderr


def consumer_metric(consumer: Service, outcome: str) -> float:
    prefix = f'allocation_consumer_messages_total{{outcome="{outcome}"}}'
    return metric_total(consumer.metrics_url, prefix)[0]


def test_the_consumer_counts_what_it_did_on_its_metrics_port(
    api: Service, consumer: Service, publisher: redis.Redis, e2e_environment: dict[str, str]
) -> None:
    ref, message_id = unique("batch"), unique("msg")
    add_batch(api, ref, unique("sku"), 10)
    before = {o: consumer_metric(consumer, o) for o in ("applied", "duplicate", "dead-lettered")}
    message = json.dumps({"batchref": ref, "qty": 4, "message_id": message_id})
    publisher.publish("change_batch_quantity", message)
    wait_for_quantity(e2e_environment["DATABASE_URL"], ref, 4)
    publisher.publish("change_batch_quantity", message)
    publisher.publish("change_batch_quantity", b"{broken")
    wait_until(
        "the consumer's dead-lettered count to move",
        lambda: consumer_metric(consumer, "dead-lettered") >= before["dead-lettered"] + 1,
        interval=0.1,
    )
    assert consumer_metric(consumer, "applied") >= before["applied"] + 1
    assert consumer_metric(consumer, "duplicate") >= before["duplicate"] + 1
