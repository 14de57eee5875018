"""What the current log lines are about: the request or message being handled.

Plain context variables, so each thread (and each request) has its own; the
entrypoints' logging configuration adds them to every record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("request_id", "message_id", "message_type")

_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in FIELDS
}


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Binds the given fields for the duration of the block."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def current() -> dict[str, str]:
    return {name: value for name, var in _context.items() if (value := var.get()) is not None}
