"""The one way a test waits for something: poll it, with a deadline.

    wait_until("the batch at qty 4", lambda: quantity(ref) == 4)
    workers = wait_until("2 workers", lambda: pids if len(pids := workers()) == 2 else None)

A timeout fails the test (AssertionError). The helper itself is devtools' (the
throwaway servers wait the same way).
"""

from __future__ import annotations

from devtools.waiting import wait_until

__all__ = ["wait_until"]
