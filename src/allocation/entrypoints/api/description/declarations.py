"""How an HTTP operation is declared: what it takes, answers and can refuse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from allocation.entrypoints import validation
from allocation.entrypoints.api import schemas


@dataclass(frozen=True)
class Answer:
    """A success response: its status, and the model (or media type) of its body."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    example: Any = None
    media: str | None = "application/json"  # None: no body
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Parameter:
    """A parameter in the path (always required) or the query string."""

    schema: dict[str, Any]
    description: str
    example: Any
    location: Literal["path", "query"] = "path"
    required: bool = True


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    answers: tuple[Answer, ...]
    description: str = ""
    body: type[BaseModel] | None = None
    body_example: Any = None
    refusals: tuple[Exception, ...] = ()  # the errors it answers, with typical messages
    parameters: dict[str, Parameter] = field(default_factory=dict)
    writes: bool = False  # a write: bearer token, JSON bodies only, the database

    @property
    def reads_the_database(self) -> bool:
        return self.tag not in ("operations", "docs")


# What several operations share.
BAD_QUANTITY = validation.InvalidInput("qty: Input should be greater than 0")
PATH_NAME = schemas.path_id.json_schema()
SKU = Parameter(PATH_NAME, "The SKU, percent-encoded.", "SMALL-TABLE")
