"""The composition root: the one place where real adapters (or fakes) are wired into handlers."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel
from sqlalchemy import Engine

from allocation.adapters import metrics
from allocation.adapters.health import Readiness, ReadinessProbe
from allocation.adapters.notifications import EmailNotifications, LoggingNotifications
from allocation.adapters.outbox_wakeup import PollingWakeup, PostgresWakeup
from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.read_models.queries import SqlReadModel
from allocation.adapters.redis_publisher import LoggingPublisher, RedisPublisher
from allocation.adapters.sql import database, orm
from allocation.config import SentinelUrl, Settings
from allocation.domain import commands, events
from allocation.domain.exceptions import SchemaNotMigrated
from allocation.service_layer import handlers, inbound
from allocation.service_layer.messagebus import Handler, MessageBus, UnitOfWorkFactory
from allocation.service_layer.ports import (
    AbstractNotifications,
    AbstractPublisher,
    AbstractReadModel,
)


def bootstrap(
    settings: Settings,
    *,
    uow_factory: UnitOfWorkFactory | None = None,
    notifications: AbstractNotifications | None = None,
    clock: handlers.Clock | None = None,
) -> MessageBus:
    """Builds the bus; anything not passed in is built from the settings (the clock
    is the system's, in UTC)."""
    if uow_factory is None:
        uow_factory = make_uow_factory(settings)
    if notifications is None:
        notifications = make_notifications(settings)
    return MessageBus(
        uow_factory=uow_factory,
        event_handlers=event_handlers(notifications),
        command_handlers=COMMAND_HANDLERS if clock is None else command_handlers(clock),
        max_attempts=settings.commit_attempts,
        on_retry=metrics.count_retry,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def command_handlers(clock: handlers.Clock) -> Mapping[type[commands.Command], Handler]:
    """Each command's handler; those that look at the time are given ``clock``."""
    return {
        commands.CreateBatch: handlers.add_batch,
        commands.Allocate: handlers.allocate,
        commands.ChangeBatchQuantity: handlers.change_batch_quantity,
        commands.CancelLine: handlers.cancel_line,
        commands.CancelOrder: handlers.cancel_order,
        commands.PlaceHold: functools.partial(handlers.place_hold, clock=clock),
        commands.ExtendHold: functools.partial(handlers.extend_hold, clock=clock),
        commands.ReleaseHold: functools.partial(handlers.release_hold, clock=clock),
        commands.ConfirmHold: functools.partial(handlers.confirm_hold, clock=clock),
        commands.ExpireHolds: functools.partial(handlers.expire_holds, clock=clock),
    }


COMMAND_HANDLERS = command_handlers(utc_now)


def event_handlers(
    notifications: AbstractNotifications,
) -> dict[type[events.Event], Sequence[Handler]]:
    """Reactions after commit. The read model and the outbox need none: the Unit of
    Work writes them in the transaction that raised the event."""
    notify: Handler = functools.partial(
        handlers.send_out_of_stock_notification, notifications=notifications
    )
    return {
        events.Allocated: [metrics.count_event],
        events.OutOfStock: [notify, metrics.count_event],
    }


@dataclass(frozen=True)
class Api:
    """What the HTTP entrypoint needs: the bus for changes, the read model for
    queries, and a readiness check."""

    bus: MessageBus
    uow_factory: UnitOfWorkFactory
    read_model: AbstractReadModel
    readiness: Callable[[], Readiness]


def api(settings: Settings) -> Api:
    engine = make_engine(settings)
    uow_factory = sqlalchemy_uow_factory(engine)
    bus = bootstrap(settings, uow_factory=uow_factory)
    # Reads need no transaction: a pool of autocommit connections of their own.
    read_model = SqlReadModel(make_engine(settings, autocommit=True))
    redis_client = None if settings.redis_url is None else make_redis(settings.redis_url)
    return Api(bus, uow_factory, read_model, ReadinessProbe(engine, redis_client).check)


def make_uow_factory(settings: Settings, by_key: bool = True) -> UnitOfWorkFactory:
    """Units of Work on the configured database (also for work that is not the bus's);
    without ``by_key`` for reports that read whole tables (database.make_engine)."""
    return sqlalchemy_uow_factory(make_engine(settings, by_key=by_key))


def inbox(settings: Settings, parse: inbound.Parser, stop: threading.Event) -> inbound.Inbox:
    """The inbound-message use case: the bus applies, the Unit of Work dead-letters."""
    factory = make_uow_factory(settings)
    bus = bootstrap(settings, uow_factory=factory)
    return inbound.Inbox(bus, factory, parse, settings.consumer_max_attempts, stop)


def make_engine(settings: Settings, autocommit: bool = False, by_key: bool = True) -> Engine:
    """An engine for the service's work, which finds its rows by key (unless told
    otherwise); without ``autocommit``, for Units of Work, which send their own BEGIN
    and COMMIT (database.py)."""
    return database.make_engine(
        settings.database_url,
        autocommit=autocommit,
        statement_timeout_ms=settings.statement_timeout_ms,
        by_key=by_key,
        own_transactions=not autocommit,
    )


def sqlalchemy_uow_factory(engine: Engine) -> Callable[[], SqlAlchemyUnitOfWork]:
    orm.start_mappers()
    return functools.partial(SqlAlchemyUnitOfWork, engine)


def relay_parts(
    settings: Settings, stop: threading.Event
) -> tuple[Callable[[], SqlAlchemyUnitOfWork], PollingWakeup]:
    """The relay's Unit of Work factory, and how it waits for new outbox rows."""
    engine = make_engine(settings)
    uow_factory = sqlalchemy_uow_factory(engine)
    if engine.dialect.name == "postgresql":
        return uow_factory, PostgresWakeup(engine, stop)
    return uow_factory, PollingWakeup(stop)


def make_publisher(settings: Settings) -> AbstractPublisher:
    """What the relay publishes with: Redis, or the log when REDIS_URL is not set."""
    if settings.redis_url is None:
        return LoggingPublisher()
    return RedisPublisher(
        make_redis(settings.redis_url),
        stream_maxlen=settings.stream_maxlen,
        replica_wait_ms=settings.relay_replica_wait_ms,
    )


REDIS_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 15}


REDIS_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 15}


def make_redis(redis_url: str) -> redis.Redis:
    """The client of the one Redis the URL names, or of the master its Sentinels name
    (it asks them again whenever a connection is lost, and so follows a failover)."""
    sentinel = SentinelUrl.parse(redis_url)
    if sentinel is None:
        return redis.Redis.from_url(redis_url, **REDIS_TIMEOUTS)
    # No retries inside redis-py (its default sleeps for seconds on a Sentinel that is
    # down): the relay's and the consumer's loops retry, with their own backoff.
    no_retry = Retry(NoBackoff(), 0)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinel.sentinels),
        sentinel_kwargs={"socket_connect_timeout": 1, "socket_timeout": 1, "retry": no_retry},
    )
    master: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]
        sentinel.master,
        db=sentinel.db,
        username=sentinel.username,
        password=sentinel.password,
        retry=no_retry,
        **REDIS_TIMEOUTS,
    )
    return master


def make_notifications(settings: Settings) -> AbstractNotifications:
    if settings.smtp_host is None:
        return LoggingNotifications()
    return EmailNotifications(
        settings.smtp_host, settings.smtp_port, settings.alerts_from, settings.alerts_to
    )


def migrate(settings: Settings) -> None:
    """Runs the Alembic migrations of the configured database up to head (safe to run twice).
    No statement timeout: a migration may rightly take long."""
    engine = database.make_engine(settings.database_url)
    try:
        database.upgrade_to_head(engine)
    finally:
        engine.dispose()


def schema_problem(settings: Settings) -> SchemaNotMigrated | None:
    """What is wrong with the configured database's schema, or None when it is at
    this code's head. Raises DatabaseUnavailable when the database cannot be reached."""
    engine = database.make_engine(settings.database_url)
    try:
        return database.schema_problem(engine)
    finally:
        engine.dispose()


def require_migrated(settings: Settings) -> None:
    """Raises SchemaNotMigrated unless the database's schema is at this code's head."""
    problem = schema_problem(settings)
    if problem is not None:
        raise problem
