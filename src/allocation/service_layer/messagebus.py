"""The message bus: routes each command to its one handler and each event to all of its handlers.

The bus holds no per-message state, so one bus serves every thread of a server:
each message gets a fresh Unit of Work and its own queue of follow-up events.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from allocation.domain import commands, events
from allocation.domain.exceptions import ConcurrencyConflict, ConnectionDropped
from allocation.service_layer import log_context, retry
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

logger = logging.getLogger(__name__)

Message = commands.Command | events.Event
Handler = Callable[[Any, AbstractUnitOfWork], Any]
UnitOfWorkFactory = Callable[[], AbstractUnitOfWork]


class MessageBus:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        event_handlers: Mapping[type[events.Event], Sequence[Handler]],
        command_handlers: Mapping[type[commands.Command], Handler],
        max_attempts: int = 10,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self._event_handlers = event_handlers
        self._command_handlers = command_handlers
        self._max_attempts = max_attempts
        self._on_retry = on_retry

    def handle(self, message: Message, source: Mapping[str, Any] | None = None) -> Any:
        """Runs the message and every event it leads to; returns the command's result.
        ``source`` names what caused it (``{"request_id": …}``, ``{"message_id": …}``)
        for the stock movements it records.

        A command's error reaches the caller, but only after the events its
        committed work raised (an OutOfStock, say) have been handled.
        """
        queue: deque[events.Event] = deque()
        try:
            if isinstance(message, commands.Command):
                handler = self._command_handlers[type(message)]
                return self._run(handler, message, queue, source or {})
            if isinstance(message, events.Event):
                queue.append(message)
                return None
            raise TypeError(f"{message!r} is neither a command nor an event")
        finally:
            self._drain(queue)

    def _drain(self, queue: deque[events.Event]) -> None:
        while queue:
            event = queue.popleft()
            for handler in self._event_handlers.get(type(event), ()):
                try:
                    self._run(handler, event, queue, {})
                except Exception:
                    logger.exception("handler %s failed for %r", _name(handler), event)

    def _run(
        self,
        handler: Handler,
        message: Message,
        queue: deque[events.Event],
        source: Mapping[str, Any],
    ) -> Any:
        """Calls the handler with a fresh Unit of Work, again on a concurrency conflict
        or when the database had dropped the pooled connection it was given."""
        result = None
        with log_context.bound(**_describe(message)):
            for attempt in self._retrying(handler, message):
                with attempt:
                    uow = self.uow_factory()
                    uow.source = source
                    try:
                        result = handler(message, uow)
                    finally:
                        queue.extend(uow.collect_new_events())
        return result

    def _retrying(self, handler: Handler, message: Message) -> retry.Retrying:
        def log_retry(state: retry.RetryCallState) -> None:
            if self._on_retry is not None:
                self._on_retry()
            logger.info(
                "%s in %s for %r, attempt %d of %d",
                _reason(state),
                _name(handler),
                message,
                state.attempt_number,
                self._max_attempts,
            )

        # Jittered, so that writers that collided do not collide again.
        return retry.policy(
            (ConcurrencyConflict, ConnectionDropped),
            attempts=self._max_attempts,
            first_wait=0.005,
            max_wait=0.2,
            jitter=True,
            before_sleep=log_retry,
        )


def _reason(state: retry.RetryCallState) -> str:
    dropped = isinstance(retry.failure(state), ConnectionDropped)
    return "dropped connection" if dropped else "concurrency conflict"


def _describe(message: Message) -> dict[str, str | None]:
    fields: dict[str, str | None] = {"message_type": type(message).__name__}
    message_id = getattr(message, "message_id", None)
    if message_id is not None:
        fields["message_id"] = message_id
    return fields


def _name(handler: Handler) -> str:
    func = getattr(handler, "func", handler)
    return getattr(func, "__qualname__", repr(func))
