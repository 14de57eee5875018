"""What the failover test runs beside the faults: a bounded load of allocations, a
watch on which database node takes writes, and the arithmetic of gaps.

Times are taken twice, monotonic (for gaps) and wall-clock (to compare with what
the servers stamp: stream entry ids, outbox ``sent_at``)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests

from devtools.failover import PgAutoFailover

RETRY_PAUSE = 0.05  # between repeats of a line answered 503: the gap is measured this finely


@dataclass(frozen=True)
class Moment:
    """A moment, on both clocks."""

    monotonic: float
    wall: float

    @classmethod
    def now(cls) -> Moment:
        return cls(time.monotonic(), time.time())


@dataclass(frozen=True)
class Answer:
    """One HTTP answer to POST /allocate."""

    orderid: str
    sku: str
    status: int  # 0: no HTTP answer at all
    body: dict[str, object]
    started: float
    ended: Moment


@dataclass
class Ledger:
    """Every answer the load got, whatever thread got it."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def with_status(self, status: int) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.status == status]

    def acknowledged(self) -> list[Answer]:
        """The 2xx allocations, in the order they were answered."""
        return sorted(self.with_status(202), key=lambda a: a.ended.monotonic)

    def between(self, start: float, end: float, status: int) -> int:
        return sum(1 for a in self.with_status(status) if start <= a.ended.monotonic <= end)


class Load:
    """``threads`` clients allocating one unit per new order, round the SKUs, to the
    APIs in turn; a line answered 503 (or not at all) is repeated until it gets an
    answer: repeating an allocation is safe, and that is what a client must do."""

    def __init__(
        self, apis: Sequence[str], skus: Sequence[str], threads: int = 3, pause: float = 0.03
    ) -> None:
        self.apis, self.skus, self.pause = list(apis), list(skus), pause
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, number: int) -> None:
        session = requests.Session()
        for n in itertools.count():
            if self._stop.is_set():
                return
            sku = self.skus[(number + n) % len(self.skus)]
            self._allocate(session, f"load-{number}-{n}", sku, number + n)
            self._stop.wait(self.pause)

    def _allocate(self, session: requests.Session, orderid: str, sku: str, turn: int) -> None:
        for attempt in itertools.count():
            api = self.apis[(turn + attempt) % len(self.apis)]
            answer = _post(session, api, orderid, sku)
            self.ledger.add(answer)
            if answer.status not in (0, 503):
                return
            time.sleep(RETRY_PAUSE)


def _post(session: requests.Session, api: str, orderid: str, sku: str) -> Answer:
    started = time.monotonic()
    try:
        response = session.post(
            f"{api}/allocate", json={"orderid": orderid, "sku": sku, "qty": 1}, timeout=30
        )
        status, body = response.status_code, response.json()
    except (requests.RequestException, ValueError) as error:
        status, body = 0, {"message": repr(error)}
    return Answer(orderid, sku, status, body, started, Moment.now())


class WritableWatch:
    """Which data node commits a row, sampled about every 50 ms from a thread of its
    own: when a primary is promoted (or back), as the test sees it."""

    def __init__(self, formation: PgAutoFailover) -> None:
        self._formation = formation
        self.samples: list[tuple[Moment, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> WritableWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            nodes = list(self._formation.nodes)
            writable = frozenset(n for n in nodes if self._formation.accepts_writes(n, 1.0))
            self.samples.append((Moment.now(), writable))
            self._stop.wait(0.05)

    def promotion_after(self, kill: Moment, settled: Moment) -> Moment:
        """The moment in (kill, settled] from which the node that ends up taking writes
        took them: when writes came back, or moved to another node, for the last
        time. (A postmaster killed may be restarted in place and take writes for a
        moment before the monitor fails over anyway.) The kill itself if no sample
        ever saw the writes stop or move."""
        promoted, previous = kill, None
        for moment, writable in list(self.samples):
            if not kill.monotonic < moment.monotonic <= settled.monotonic:
                continue
            if writable and previous is not None and writable != previous:
                promoted = moment
            previous = writable
        return promoted


def first_after(moments: Sequence[float], start: float) -> float | None:
    """The first of ``moments`` at or after ``start``."""
    return min((m for m in moments if m >= start), default=None)


def timed(call: Callable[[], object]) -> tuple[float, Moment]:
    """Seconds ``call`` took, and when it returned."""
    started = time.monotonic()
    call()
    return time.monotonic() - started, Moment.now()
