"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from allocation import bootstrap
from allocation.adapters.health import Readiness
from allocation.config import Settings
from allocation.service_layer.messagebus import MessageBus
from devtools.servers import PostgresServer, RedisServer
from tests.fakes import FakeNotifications, FakeReadModel, FakeStore, FakeUnitOfWork

# Every variable the service reads, from the settings themselves: none can be missed.
_SERVICE_VARIABLES = Settings.variables()

# Captured before the autouse fixture below clears them: point the suite at
# running servers with DATABASE_URL / REDIS_URL instead of throwaway ones.
EXTERNAL_DATABASE_URL = os.environ.get("DATABASE_URL")
EXTERNAL_REDIS_URL = os.environ.get("REDIS_URL")


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's service configuration by accident."""
    for name in _SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class FakeService:
    bus: MessageBus
    store: FakeStore
    notifications: FakeNotifications
    api: bootstrap.Api

    def published(self, channel: str) -> list[dict[str, object]]:
        """What the outbox holds for a channel, without the envelope's id and time."""
        return [
            {k: v for k, v in m.payload.items() if k not in ("message_id", "occurred_at")}
            for m in self.store.outbox
            if m.channel == channel
        ]


@pytest.fixture
def fake_service() -> Iterator[FakeService]:
    """The service wired to fakes: the bus, and what the HTTP entrypoint needs."""
    store = FakeStore()
    notifications = FakeNotifications()

    def uow_factory() -> FakeUnitOfWork:
        return FakeUnitOfWork(store)

    bus = bootstrap.bootstrap(Settings(), uow_factory=uow_factory, notifications=notifications)
    ready = Readiness({"database": "ok"})
    api = bootstrap.Api(bus, uow_factory, FakeReadModel(store), lambda: ready)
    yield FakeService(bus, store, notifications, api)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """A throwaway PostgreSQL server, or None when DATABASE_URL points at a running one."""
    if EXTERNAL_DATABASE_URL and EXTERNAL_DATABASE_URL.startswith("postgresql"):
        yield None
        return
    with PostgresServer() as server:
        yield server


def _database(server: PostgresServer | None, name: str) -> str:
    return EXTERNAL_DATABASE_URL if server is None else server.create_database(name)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer | None) -> str:
    """The integration tests' database."""
    return _database(postgres_server, "allocation_test")


@pytest.fixture(scope="session")
def e2e_database_url(postgres_server: PostgresServer | None) -> str:
    """The end-to-end tests' database, apart from the integration tests' one: the
    session's relay and consumer processes keep working on it while other tests run."""
    return _database(postgres_server, "allocation_e2e")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """A throwaway Redis server, or None when REDIS_URL points at a running one."""
    if EXTERNAL_REDIS_URL:
        yield None
        return
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer | None) -> str:
    return EXTERNAL_REDIS_URL if redis_server is None else redis_server.url  # type: ignore[return-value]
