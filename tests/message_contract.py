"""The Redis messages' contract, recorded: what subscribers and producers rely on.

`tests/contracts/messages.json` holds the message schemas as they were when last
recorded. A change may add fields; it may not remove, rename or retype a field
of a published message, make a published field optional, or make the consumer
require a field producers were not sending. To record a change that keeps these
rules (a new message, a new field):

    python -m tests.message_contract --record
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from allocation.entrypoints.workers import asyncapi

SNAPSHOT = Path(__file__).with_name("contracts") / "messages.json"

# What a field's schema may change without being a new type: words for people.
_ANNOTATIONS = frozenset({"title", "description", "examples", "default"})


def current() -> dict[str, dict[str, Any]]:
    """Each channel's message schema, by direction, from the AsyncAPI document."""
    return payload_schemas(asyncapi.build_spec())


def payload_schemas(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each channel's message schema, by direction ("published", "consumed"), from
    an AsyncAPI document (built here, or as the API serves it)."""
    found: dict[str, dict[str, Any]] = {"published": {}, "consumed": {}}
    for operation in spec["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        [message_ref] = spec["channels"][channel]["messages"].values()
        message = spec["components"]["messages"][message_ref["$ref"].rsplit("/", 1)[1]]
        schema = spec["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        direction = "published" if operation["action"] == "send" else "consumed"
        found[direction][channel] = schema
    return found


def recorded() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(SNAPSHOT.read_text())
    return loaded


def breaking_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    """What ``new`` breaks of ``old``, for a person to read; empty when compatible."""
    problems = []
    for channel, schema in old["published"].items():
        if channel not in new["published"]:
            problems.append(f"{channel}: no longer published")
            continue
        problems += _published(channel, schema, new["published"][channel])
    for channel, schema in old["consumed"].items():
        if channel not in new["consumed"]:
            problems.append(f"{channel}: no longer consumed")
            continue
        problems += _consumed(channel, schema, new["consumed"][channel])
    return problems


def _published(channel: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Subscribers read every field they were given: each must stay, typed as it was."""
    problems = _retyped_or_removed(channel, old, new)
    for field in set(old.get("required", [])) - set(new.get("required", [])):
        if field in new["properties"]:
            problems.append(f"{channel}.{field}: no longer always sent")
    return problems


def _consumed(channel: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Producers send what was accepted: it must still be accepted, and nothing new
    may be demanded of them."""
    problems = _retyped_or_removed(channel, old, new)
    for field in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{channel}.{field}: newly required of producers")
    return problems


def _retyped_or_removed(channel: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    problems = []
    for field, schema in old["properties"].items():
        if field not in new["properties"]:
            problems.append(f"{channel}.{field}: removed (or renamed)")
        elif _type(schema) != _type(new["properties"][field]):
            problems.append(
                f"{channel}.{field}: retyped from {_type(schema)} to "
                f"{_type(new['properties'][field])}"
            )
    return problems


def _type(schema: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in schema.items() if k not in _ANNOTATIONS}, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record the current schemas")
    arguments = parser.parse_args()
    problems = breaking_changes(recorded(), current()) if SNAPSHOT.exists() else []
    if problems:
        raise SystemExit("Not recorded: the change breaks the contract:\n" + "\n".join(problems))
    if arguments.record:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current(), indent=2, sort_keys=True) + "\n")
        print(f"recorded {SNAPSHOT.name}")


if __name__ == "__main__":
    main()
