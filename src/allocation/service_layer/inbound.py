"""Messages other systems send us: applied through the bus, dead-lettered when they never can be.

The entrypoint reads the transport (a Redis channel or stream, the command
line) and knows the wire format, so it brings a parser; this use case decides
what becomes of each message: applied, skipped as a duplicate, dead-lettered
with the reason, or left for later while the database cannot be reached.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from allocation.domain import commands
from allocation.domain.exceptions import AllocationError, InfrastructureUnavailable
from allocation.service_layer import dead_letters, log_context, retry
from allocation.service_layer.messagebus import MessageBus, UnitOfWorkFactory

logger = logging.getLogger(__name__)


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"  # a later change to the same batch was applied already
    DEAD_LETTERED = "dead-lettered"
    RETRY_LATER = "retry later"


_DONE = {
    Outcome.APPLIED: "applied",
    Outcome.DUPLICATE: "skipped duplicate",
    Outcome.STALE: "skipped stale",
}


class Rejected(Exception):
    """The message can never be applied as it is; the message says why."""


Parser = Callable[[bytes | str, str | None, str | None], commands.Command]
"""Turns a message's bytes into a command, or raises Rejected. Also given: the id to
use when the message carries none, and its stream entry id when it came from a
stream (it orders changes from a producer that sends no position of its own)."""


@dataclass(frozen=True)
class Inbox:
    bus: MessageBus
    uow_factory: UnitOfWorkFactory
    parse: Parser
    attempts: int  # tries while the database is unreachable
    stop: threading.Event

    def process(
        self,
        data: bytes,
        source: str,
        fallback_id: str | None = None,
        stream_entry: str | None = None,
    ) -> Outcome:
        """Parses once, applies (retrying only an unreachable database), and says
        what became of the message; it never raises."""
        with log_context.bound(message_id=fallback_id):
            try:
                command = self.parse(data, fallback_id, stream_entry)
            except Rejected as rejected:
                return self._dead_letter(data, source, str(rejected), fallback_id)
        with log_context.bound(message_id=getattr(command, "message_id", None) or fallback_id):
            return self._apply(command, data, source, fallback_id)

    def _apply(
        self, command: commands.Command, data: bytes, source: str, fallback_id: str | None
    ) -> Outcome:
        try:
            for attempt in self._retrying(data, source):
                with attempt:
                    outcome = apply(self.bus, command)
        except Rejected as rejected:
            return self._dead_letter(data, source, str(rejected), fallback_id)
        except InfrastructureUnavailable as error:
            if self.stop.is_set():
                return Outcome.RETRY_LATER
            reason = f"failed {self.attempts} times: {error}"
            return self._dead_letter(data, source, reason, fallback_id)
        except Exception as error:  # a bug: keep the message, report it, go on
            logger.exception("applying %s message %r failed", source, data)
            return self._dead_letter(data, source, f"failed: {error!r}", fallback_id)
        logger.info("%s %s message %r", _DONE[outcome], source, data)
        return outcome

    def _retrying(self, data: bytes, source: str) -> retry.Retrying:
        def log_retry(state: retry.RetryCallState) -> None:
            logger.warning(
                "attempt %d/%d of %s message %r failed: %s",
                state.attempt_number,
                self.attempts,
                source,
                data,
                retry.failure(state),
            )

        return retry.policy(
            (InfrastructureUnavailable,),
            attempts=self.attempts,
            first_wait=0.1,
            max_wait=2.0,
            stop=self.stop,
            before_sleep=log_retry,
        )

    def _dead_letter(
        self, data: bytes, source: str, reason: str, message_id: str | None
    ) -> Outcome:
        payload = data.decode("utf-8", errors="replace")
        try:
            dead_letters.record(self.uow_factory(), source, payload, reason, message_id)
        except Exception:
            logger.exception("could not dead-letter %s message %r (%s)", source, data, reason)
            return Outcome.RETRY_LATER
        logger.warning("dead-lettered %s message %r: %s", source, data, reason)
        return Outcome.DEAD_LETTERED

    def redrive(self, letter_id: int) -> Outcome:
        """Applies a dead letter again, once, and marks it re-driven if that worked.
        Raises Rejected when it still cannot be applied (or is no dead letter)."""
        letter = dead_letters.get(self.uow_factory(), letter_id)
        if letter is None:
            raise Rejected(f"no dead letter {letter_id}")
        if letter.redriven_at is not None:
            raise Rejected(f"dead letter {letter_id} was already re-driven")
        try:
            outcome = apply(self.bus, self.parse(letter.payload, letter.message_id, None))
        except Rejected as error:
            raise Rejected(f"still cannot apply it: {error}") from None
        dead_letters.mark_redriven(self.uow_factory(), letter_id)
        return outcome


def apply(bus: MessageBus, command: commands.Command) -> Outcome:
    """Runs the command: applied, a duplicate (its message id was applied before) or
    stale. An error that will not go away by itself (an unknown batch, a change that
    keeps losing its race after the bus's own retries) is a Rejected; an unreachable
    database is not."""
    message_id = getattr(command, "message_id", None)
    source = {} if message_id is None else {"message_id": message_id}
    try:
        return Outcome(bus.handle(command, source))
    except InfrastructureUnavailable:
        raise
    except AllocationError as error:
        raise Rejected(str(error)) from None
