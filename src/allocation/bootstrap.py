"""The composition root: the one place where real adapters (or fakes) are wired into handlers."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence

import redis
from sqlalchemy.orm import sessionmaker

from allocation.adapters import database, orm
from allocation.adapters.outbox_wakeup import PollingWakeup, PostgresWakeup
from allocation.adapters.notifications import EmailNotifications, LoggingNotifications
from allocation.adapters.redis_publisher import LoggingPublisher, RedisPublisher
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.config import Settings
from allocation.domain import commands, events
from allocation.service_layer import handlers
from allocation.service_layer.messagebus import Handler, MessageBus, UnitOfWorkFactory
from allocation.service_layer.ports import AbstractNotifications, AbstractPublisher


def bootstrap(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory | None = None,
    notifications: AbstractNotifications | None = None,
) -> MessageBus:
    """Builds the bus; anything not passed in is built from the settings."""
    if uow_factory is None:
        uow_factory = sqlalchemy_uow_factory(settings.database_url)
    if notifications is None:
        notifications = make_notifications(settings)
    return MessageBus(
        uow_factory=uow_factory,
        event_handlers=event_handlers(notifications),
        command_handlers=COMMAND_HANDLERS,
        max_attempts=settings.commit_attempts,
    )


COMMAND_HANDLERS: Mapping[type[commands.Command], Handler] = {
    commands.CreateBatch: handlers.add_batch,
    commands.Allocate: handlers.allocate,
    commands.ChangeBatchQuantity: handlers.change_batch_quantity,
}


def event_handlers(
    notifications: AbstractNotifications,
) -> dict[type[events.Event], Sequence[Handler]]:
    """Reactions after commit. The read model and the outbox need none: the Unit of
    Work writes them in the transaction that raised the event."""
    notify: Handler = functools.partial(
        handlers.send_out_of_stock_notification, notifications=notifications
    )
    return {events.OutOfStock: [notify]}


def sqlalchemy_uow_factory(database_url: str) -> Callable[[], SqlAlchemyUnitOfWork]:
    orm.start_mappers()
    session_factory = sessionmaker(bind=database.make_engine(database_url))
    return functools.partial(SqlAlchemyUnitOfWork, session_factory)


def relay_parts(
    settings: Settings, stop: threading.Event
) -> tuple[Callable[[], SqlAlchemyUnitOfWork], PollingWakeup]:
    """The relay's Unit of Work factory, and how it waits for new outbox rows."""
    orm.start_mappers()
    engine = database.make_engine(settings.database_url)
    uow_factory = functools.partial(SqlAlchemyUnitOfWork, sessionmaker(bind=engine))
    if engine.dialect.name == "postgresql":
        return uow_factory, PostgresWakeup(engine, stop)
    return uow_factory, PollingWakeup(stop)


def make_publisher(settings: Settings) -> AbstractPublisher:
    """What the relay publishes with: Redis, or the log when REDIS_URL is not set."""
    if settings.redis_url is None:
        return LoggingPublisher()
    return RedisPublisher(make_redis(settings.redis_url), stream_maxlen=settings.stream_maxlen)


def make_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=15
    )


def make_notifications(settings: Settings) -> AbstractNotifications:
    if settings.smtp_host is None:
        return LoggingNotifications()
    return EmailNotifications(
        settings.smtp_host, settings.smtp_port, settings.alerts_from, settings.alerts_to
    )


def migrate(settings: Settings) -> None:
    """Runs the Alembic migrations of the configured database up to head (safe to run twice)."""
    engine = database.make_engine(settings.database_url)
    try:
        database.upgrade_to_head(engine)
    finally:
        engine.dispose()
