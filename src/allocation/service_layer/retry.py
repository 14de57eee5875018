"""How the service tries again: one tenacity policy, told what to retry and for how long.

Used by the bus (a change that lost a race, or met a dropped connection), the
consumer (a message while the database is unreachable), the consumer's Redis
loops (while Redis is unreachable) and the relay and the hold-expiry worker
(anything, until they are stopped). Each caller retries only what no layer below
it already retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    stop_when_event_set,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from allocation.domain.exceptions import InfrastructureUnavailable

__all__ = ["RetryCallState", "Retrying", "failure", "next_wait", "policy", "until_stopped"]


def policy(
    retry_on: tuple[type[BaseException], ...],
    *,
    attempts: int | None,
    first_wait: float,
    max_wait: float,
    stop: threading.Event | None = None,
    jitter: bool = False,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """Retries ``retry_on`` errors with exponential backoff from ``first_wait`` up to
    ``max_wait`` seconds (randomised with ``jitter``, so that racing writers part),
    ``attempts`` times in all (None: until ``stop`` is set). The last error is
    re-raised; a set ``stop`` also ends the waiting at once."""
    conditions: list[stop_base] = []
    if attempts is not None:
        conditions.append(stop_after_attempt(attempts))
    if stop is not None:
        conditions.append(stop_when_event_set(stop))
    waiting = wait_random_exponential if jitter else wait_exponential
    return Retrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_any(*conditions),  # with no condition, never
        wait=waiting(multiplier=first_wait, max=max_wait),
        sleep=(lambda seconds: _wait(stop, seconds)) if stop is not None else time.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def _wait(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)


def next_wait(state: RetryCallState) -> float:
    """Seconds until the next attempt (for a log line before sleeping)."""
    return state.next_action.sleep if state.next_action is not None else 0.0


def failure(state: RetryCallState) -> BaseException | None:
    """The error the attempt that just failed raised."""
    return state.outcome.exception() if state.outcome is not None else None


def until_stopped(
    stop: threading.Event, log: logging.Logger, what: str, max_wait: float = 1.0
) -> Retrying:
    """Every failure retried until ``stop``, for a worker that must never give up: an
    unreachable database or broker is a warning, anything else an error with its
    traceback. Raises only once ``stop`` is set."""

    def log_retry(state: RetryCallState) -> None:
        error, wait = failure(state), next_wait(state)
        if isinstance(error, InfrastructureUnavailable):
            detail = getattr(error, "detail", "")
            log.warning("%s (%s); retrying in %.2fs", error, detail, wait)
        else:
            log.error("%s failed; retrying in %.2fs", what, wait, exc_info=error)

    return policy(
        (Exception,),
        attempts=None,
        first_wait=0.05,
        max_wait=max_wait,
        stop=stop,
        before_sleep=log_retry,
    )
