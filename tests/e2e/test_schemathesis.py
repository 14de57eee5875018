"""Property-based tests of the live API process against its OpenAPI description (schemathesis).

Schemathesis generates requests from the description, valid ones and invalid
ones, sends them to the real `allocation api` process (PostgreSQL, Redis) and
checks that no answer is a server error and that every answer is one the
description documents: status code, content type, headers and body schema.
"""

from __future__ import annotations

from typing import Protocol

import pytest
import schemathesis
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = (
    50  # per operation, for the fuzzing phase; the whole module runs in well under a minute
)

# Not fuzzed: their answers are text or HTML, or describe the running process.
NOT_FUZZED = ["/", "/metrics", "/openapi.json", "/asyncapi.json", "/docs"]


class LiveApi(Protocol):
    """What this module needs of the `api` fixture (tests/e2e/conftest.py)."""

    url: str


def valid_input_is_not_rejected(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A request the description calls valid never gets "invalid input": spec and validation agree.

    Two 400s remain possible for a valid request, neither about its shape as the
    description can state it:
    - `Invalid sku <sku>` from /allocate and /holds: it depends on the stock.
    - a whole number written with a fraction, like `61.0` for `qty` or `ttl_seconds`:
      JSON Schema cannot tell it from `61` (both are the integer 61 to it), but the
      API takes only integer literals, as the description's text says.
    """
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return None
    if response.status_code != 400:
        return True
    message = response.json()["message"]
    if case.path in ("/allocate", "/holds") and message.startswith("Invalid sku "):
        return True
    given = case.body if isinstance(case.body, dict) else {}
    fractions = [k for k in ("qty", "ttl_seconds") if isinstance(given.get(k), float)]
    if fractions:
        assert message == "; ".join(f"{k}: Input should be a valid integer" for k in fractions)
        return True
    raise AssertionError(f"valid input rejected: {message}")


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    valid_input_is_not_rejected,
]


@pytest.fixture(scope="module")
def api_schema(api: LiveApi) -> schemathesis.BaseSchema:
    # The description the live app serves, so the test checks what clients see.
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    schema.config.update(base_url=api.url)
    # No example database: every run starts afresh (Hypothesis still keeps caches in the
    # self-ignored .hypothesis/ folder).
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return schema


lazy_schema = schemathesis.pytest.from_fixture("api_schema").exclude(path=NOT_FUZZED)


@lazy_schema.parametrize()
def test_the_live_api_keeps_its_description(case: Case) -> None:
    case.call_and_validate(checks=CHECKS)
