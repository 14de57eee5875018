"""What the current log lines are about: the request or message being handled.

Plain context variables, so each thread (and each request) has its own; the
entrypoints' logging configuration adds them to every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("request_id", "message_id", "message_type")

_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in FIELDS
}


def bind(**values: str | None) -> Callable[[], None]:
    """Binds the given fields; returns the function that restores what was bound before."""
    tokens = [(_context[name], _context[name].set(value)) for name, value in values.items()]

    def unbind() -> None:
        for variable, token in reversed(tokens):
            variable.reset(token)

    return unbind


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Binds the given fields for the duration of the block."""
    unbind = bind(**values)
    try:
        yield
    finally:
        unbind()


def current() -> dict[str, str]:
    return {name: value for name, var in _context.items() if (value := var.get()) is not None}
