"""The AsyncAPI description: valid, complete, equal to what is sent and accepted, and stable."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker, ValidationError
from pydantic_asyncapi import AsyncAPI

from allocation.config import Settings
from allocation.domain import events
from allocation.entrypoints.api.app import create_app
from allocation.entrypoints.workers import asyncapi, messages
from allocation.service_layer.messages import CHANNELS, INBOUND_CHANNEL, to_message
from tests import message_contract
from tests.conftest import FakeService

SPEC = asyncapi.build_spec()


def resolve(ref: str) -> Any:
    node: Any = SPEC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def payload_schema(channel: str) -> dict[str, Any]:
    [message] = SPEC["channels"][channel]["messages"].values()
    schema: dict[str, Any] = resolve(resolve(message["$ref"])["payload"]["$ref"])
    return schema


def test_the_document_is_asyncapi_3_and_every_reference_resolves() -> None:
    AsyncAPI.model_validate(SPEC)
    assert SPEC["asyncapi"] == "3.0.0"
    found = refs(SPEC)
    assert len(found) > 20
    for ref in found:
        assert resolve(ref) is not None, ref
    assert json.loads(json.dumps(SPEC)) == SPEC


def test_every_message_in_and_out_is_described() -> None:
    published = {
        op["channel"]["$ref"] for op in SPEC["operations"].values() if op["action"] == "send"
    }
    consumed = {
        op["channel"]["$ref"] for op in SPEC["operations"].values() if op["action"] == "receive"
    }
    assert published == {f"#/channels/{channel}" for channel in CHANNELS.values()}
    assert consumed == {f"#/channels/{INBOUND_CHANNEL}"}
    assert set(asyncapi.EXAMPLES) == set(CHANNELS)


@pytest.mark.parametrize("event", list(asyncapi.EXAMPLES.values()), ids=lambda e: type(e).__name__)
def test_a_published_payload_is_what_its_schema_describes(event: events.Event) -> None:
    message = to_message(event)
    assert message is not None
    schema = payload_schema(message.channel)
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema, format_checker=FormatChecker())
    validator.validate(json.loads(json.dumps(message.payload)))  # as the relay sends it
    assert set(message.payload) == set(schema["properties"])
    assert set(schema["required"]) == set(schema["properties"]) - type(event).sent_only_when_set
    [example] = resolve(f"#/components/messages/{schema['title']}")["examples"]
    validator.validate(example["payload"])


def test_the_consumed_schema_is_the_consumers_validation() -> None:
    schema = payload_schema(INBOUND_CHANNEL)
    Draft7Validator.check_schema(schema)
    assert (
        schema["properties"]
        == messages.ChangeBatchQuantityMessage.model_json_schema()["properties"]
    )
    [message] = SPEC["channels"][INBOUND_CHANNEL]["messages"].values()
    [example] = resolve(message["$ref"])["examples"]
    Draft7Validator(schema).validate(example["payload"])
    command = messages.parse_change_batch_quantity(json.dumps(example["payload"]), None, None)
    assert (command.ref, command.qty) == ("batch-001", 10)


def test_the_document_is_served(fake_service: FakeService) -> None:
    client = create_app(Settings(), service=fake_service.api).test_client()
    response = client.get("/asyncapi.json")
    assert (response.status_code, response.content_type) == (200, "application/json")
    assert response.get_json() == SPEC


# The contract: recorded schemas that a change may extend but not break.


def test_no_change_breaks_the_recorded_message_contract() -> None:
    problems = message_contract.breaking_changes(
        message_contract.recorded(), message_contract.current()
    )
    assert problems == [], "\n".join(problems)


def test_every_message_is_recorded() -> None:
    """A new message joins the contract when it is recorded (see tests/message_contract.py)."""
    recorded, current = message_contract.recorded(), message_contract.current()
    for direction in ("published", "consumed"):
        assert set(recorded[direction]) == set(current[direction]), direction


def changed(edit: Any) -> list[str]:
    """The problems found after ``edit`` changes a copy of the current schemas."""
    new = copy.deepcopy(message_contract.current())
    edit(new)
    return message_contract.breaking_changes(message_contract.current(), new)


def test_removing_or_renaming_a_published_field_breaks_it() -> None:
    def rename(new: dict[str, Any]) -> None:
        allocated = new["published"]["line_allocated"]
        allocated["properties"]["batch"] = allocated["properties"].pop("batchref")

    assert changed(rename) == ["line_allocated.batchref: removed (or renamed)"]


def test_retyping_a_published_field_breaks_it() -> None:
    def retype(new: dict[str, Any]) -> None:
        new["published"]["back_in_stock"]["properties"]["available"]["type"] = "string"

    [problem] = changed(retype)
    assert problem.startswith("back_in_stock.available: retyped")


def test_making_a_published_field_optional_breaks_it() -> None:
    def optional(new: dict[str, Any]) -> None:
        new["published"]["line_deallocated"]["required"].remove("reason")

    assert changed(optional) == ["line_deallocated.reason: no longer always sent"]


def test_dropping_a_message_breaks_it() -> None:
    assert changed(lambda new: new["published"].pop("sold_out")) == [
        "sold_out: no longer published"
    ]


def test_requiring_more_of_producers_breaks_it() -> None:
    def require(new: dict[str, Any]) -> None:
        new["consumed"]["change_batch_quantity"]["required"].append("message_id")

    assert changed(require) == ["change_batch_quantity.message_id: newly required of producers"]


def test_adding_fields_or_words_is_fine() -> None:
    def extend(new: dict[str, Any]) -> None:
        allocated = new["published"]["line_allocated"]
        allocated["properties"]["eta"] = {"type": ["string", "null"], "format": "date"}
        allocated["properties"]["qty"]["description"] = "Units allocated."
        inbound = new["consumed"]["change_batch_quantity"]
        inbound["properties"]["reason"] = {"type": "string"}

    assert changed(extend) == []


def test_a_field_sent_only_when_set_is_left_out_rather_than_null() -> None:
    released = to_message(events.HoldEnded("cart-1", "LAMP", 2, "released"))
    assert released is not None and "orderid" not in released.payload
    schema = payload_schema(released.channel)
    Draft7Validator(schema).validate(json.loads(json.dumps(released.payload)))
    with pytest.raises(ValidationError):
        Draft7Validator(schema).validate({**released.payload, "orderid": None})
