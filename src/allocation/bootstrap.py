"""The composition root: the one place where real adapters (or fakes) are wired into handlers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import redis
from sqlalchemy.orm import sessionmaker

from allocation.adapters import database, orm
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
    publisher: AbstractPublisher | None = None,
    notifications: AbstractNotifications | None = None,
) -> MessageBus:
    """Builds the bus; anything not passed in is built from the settings."""
    if uow_factory is None:
        uow_factory = sqlalchemy_uow_factory(settings.database_url)
    if publisher is None:
        publisher = make_publisher(settings)
    if notifications is None:
        notifications = make_notifications(settings)
    return MessageBus(
        uow_factory=uow_factory,
        event_handlers=event_handlers(publisher, notifications),
        command_handlers=COMMAND_HANDLERS,
        max_attempts=settings.commit_attempts,
    )


COMMAND_HANDLERS: Mapping[type[commands.Command], Handler] = {
    commands.CreateBatch: handlers.add_batch,
    commands.Allocate: handlers.allocate,
    commands.ChangeBatchQuantity: handlers.change_batch_quantity,
}


def event_handlers(
    publisher: AbstractPublisher, notifications: AbstractNotifications
) -> dict[type[events.Event], Sequence[Handler]]:
    publish: Handler = functools.partial(handlers.publish_event, publisher=publisher)
    notify: Handler = functools.partial(
        handlers.send_out_of_stock_notification, notifications=notifications
    )
    return {
        events.Allocated: [handlers.add_allocation_to_read_model, publish],
        events.Deallocated: [handlers.remove_allocation_from_read_model, publish,
                             handlers.reallocate],
        events.OutOfStock: [publish, notify],
    }


def sqlalchemy_uow_factory(database_url: str) -> Callable[[], SqlAlchemyUnitOfWork]:
    orm.start_mappers()
    session_factory = sessionmaker(bind=database.make_engine(database_url))
    return functools.partial(SqlAlchemyUnitOfWork, session_factory)


def make_publisher(settings: Settings) -> AbstractPublisher:
    if settings.redis_url is None:
        return LoggingPublisher()
    return RedisPublisher(redis.Redis.from_url(settings.redis_url))


def make_notifications(settings: Settings) -> AbstractNotifications:
    if settings.smtp_host is None:
        return LoggingNotifications()
    return EmailNotifications(
        settings.smtp_host, settings.smtp_port, settings.alerts_from, settings.alerts_to
    )


def migrate(settings: Settings) -> None:
    """Creates or upgrades the schema of the configured database."""
    engine = database.make_engine(settings.database_url)
    try:
        database.create_schema(engine)
    finally:
        engine.dispose()
