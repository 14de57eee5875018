"""This process's id, asked of the system once and again only after a fork.

The logging module (for every record) and prometheus-client's multiprocess values
(on every increment, to notice a fork) would each ask the system every time.
"""

from __future__ import annotations

import os


class ThisProcess:
    pid = os.getpid()

    @classmethod
    def refresh(cls) -> None:
        cls.pid = os.getpid()

    @classmethod
    def identifier(cls) -> int:
        return cls.pid


os.register_at_fork(after_in_child=ThisProcess.refresh)
