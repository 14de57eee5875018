"""The one way to wait for something: poll it, with a deadline.

    wait_until("the batch at qty 4", lambda: quantity(ref) == 4)
    workers = wait_until("2 workers", lambda: pids if len(pids := workers()) == 2 else None)

Only None and False mean "not yet": any other value (0 and [] included) ends
the wait and is returned, so a check that counts should compare explicitly.
Shared by the tests (where a timeout fails the test) and the throwaway servers
(where it is the servers' own error).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar, cast

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    what: str,
    check: Callable[[], T | None | bool],
    timeout: float = 10.0,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
    error: type[Exception] = AssertionError,
) -> T:
    """Calls ``check`` every ``interval`` seconds until it returns something other
    than None or False, and returns that. After ``timeout`` seconds raises ``error``
    naming ``what``, the timeout and ``detail()`` (a log tail, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return cast(T, result)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = f"timed out after {timeout:g}s waiting for {what}"
            if detail is not None:
                message += f"\n{detail()}"
            raise error(message)
        time.sleep(min(interval, remaining))
