"""Settings read once from the environment by an entrypoint, then passed in.

One table: each setting is declared once, with its environment variable, its
default and what a valid value is. A malformed value stops the command with a
message that names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal
from urllib.parse import parse_qsl, quote, unquote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///allocation.sqlite3"
# Never echoed in an error: they may hold a password.
SECRETS = ("DATABASE_URL", "DATABASE_PASSWORD", "REDIS_URL", "API_TOKEN")
# Taken as given, not stripped: a password's spaces may be part of it.
VERBATIM = ("DATABASE_PASSWORD",)
DATABASES = ("sqlite", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
# The schemes of libpq's own URIs, as `pg_autoctl show uri` prints them.
LIBPQ_SCHEMES = ("postgres", "postgresql")
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


class ConfigError(ValueError):
    """A setting in the environment is malformed; the message names the variable."""


Count = Annotated[int, Field(ge=1)]
# One address (an e-mail header takes what it is given: no spaces, commas or newlines).
Address = Annotated[str, Field(pattern=r"^[^@\s,;<>]+@[^@\s,;<>]+$")]
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-\[\]:]+$", max_length=255)]
# A name in a Redis consumer group and in the logs: printable, no spaces.
ConsumerName = Annotated[str, Field(pattern=r"^[!-~]+$", max_length=200)]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # Declared before database_url, whose validator puts it in the URL (pydantic
    # validates fields in this order): any characters, no URL-encoding needed.
    database_password: str | None = Field(
        default=None, validation_alias="DATABASE_PASSWORD", repr=False
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL", repr=False
    )
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    smtp_host: HostName | None = Field(default=None, validation_alias="SMTP_HOST")
    smtp_port: Count = Field(default=25, validation_alias="SMTP_PORT")
    alerts_from: Address = Field(default="allocation@localhost", validation_alias="ALERTS_FROM")
    alerts_to: Address = Field(default="stock@localhost", validation_alias="ALERTS_TO")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", validation_alias="LOG_LEVEL"
    )
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="LOG_FORMAT")
    max_request_bytes: Count = Field(default=64 * 1024, validation_alias="MAX_REQUEST_BYTES")
    commit_attempts: Count = Field(default=10, validation_alias="COMMIT_ATTEMPTS")
    statement_timeout_ms: int = Field(default=10_000, validation_alias="STATEMENT_TIMEOUT_MS", ge=0)
    api_token: str | None = Field(default=None, validation_alias="API_TOKEN")
    stream_maxlen: Count = Field(default=100_000, validation_alias="STREAM_MAXLEN")
    relay_batch_size: Count = Field(default=100, validation_alias="RELAY_BATCH_SIZE")
    relay_poll_ms: Count = Field(default=1000, validation_alias="RELAY_POLL_MS")
    relay_linger_ms: int = Field(default=20, validation_alias="RELAY_LINGER_MS", ge=0)
    # Below the Redis client's 5 s socket timeout, which WAIT must not reach.
    relay_replica_wait_ms: Count = Field(
        default=1000, validation_alias="RELAY_REPLICA_WAIT_MS", le=4000
    )
    outbox_retention_hours: Count = Field(default=168, validation_alias="OUTBOX_RETENTION_HOURS")
    consumer_name: ConsumerName | None = Field(default=None, validation_alias="CONSUMER_NAME")
    consumer_max_attempts: Count = Field(default=5, validation_alias="CONSUMER_MAX_ATTEMPTS")
    consumer_claim_idle_ms: Count = Field(default=30_000, validation_alias="CONSUMER_CLAIM_IDLE_MS")
    hold_expiry_poll_ms: Count = Field(default=500, validation_alias="HOLD_EXPIRY_POLL_MS")

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """Every environment variable the service reads, in declaration order."""
        return tuple(str(field.validation_alias) for field in cls.model_fields.values())

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """The settings the environment sets; unset and blank variables keep the default."""
        variables = set(cls.variables())
        given = {
            name: value if name in VERBATIM else value.strip()
            for name, value in environ.items()
            if name in variables
        }
        try:
            return cls.model_validate(
                {name: value for name, value in given.items() if value.strip()}
            )
        except ValidationError as error:
            raise ConfigError(_describe(error)) from None

    @property
    def relay_poll_seconds(self) -> float:
        return self.relay_poll_ms / 1000

    @property
    def relay_linger_seconds(self) -> float:
        return self.relay_linger_ms / 1000

    @property
    def redis_sentinel(self) -> SentinelUrl | None:
        """The Sentinels that REDIS_URL names, or None for the URL of one Redis."""
        return None if self.redis_url is None else SentinelUrl.parse(self.redis_url)

    @property
    def shown_redis_url(self) -> str | None:
        """REDIS_URL for a person: no password."""
        if self.redis_url is None:
            return None
        sentinel = self.redis_sentinel
        if sentinel is not None:
            return sentinel.shown
        return make_url(self.redis_url).render_as_string(hide_password=True)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str, info: ValidationInfo) -> str:
        """A supported database's URL; with DATABASE_PASSWORD, if set, as its password
        (so that every engine gets it: `database_url` is the URL to connect to).
        libpq's own URI, several hosts included, becomes SQLAlchemy's."""
        try:
            value = _sqlalchemy_url(value)
            url = make_url(value)
        except MalformedUrl as error:
            raise ValueError(f"not a database URL: {error}") from None
        except (ArgumentError, ValueError):  # not a URL; a port that is not a number
            raise ValueError(
                "not a database URL, e.g. postgresql+psycopg2://user:pw@host/db"
            ) from None
        backend = url.get_backend_name()
        if backend not in DATABASES:
            raise ValueError(f"{backend!r} is not one of {', '.join(DATABASES)}")
        password = info.data.get("database_password")
        if password is None:
            return value
        if not url.username:  # a URL without a user has no place for a password
            raise ValueError("names no user for DATABASE_PASSWORD: put the user in the URL")
        # Rendering percent-encodes the password; make_url decodes it back exactly.
        return url.set(password=password).render_as_string(hide_password=False)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        scheme = None if value is None else value.partition("://")[0]
        if value is not None and scheme not in REDIS_SCHEMES:
            raise ValueError("not a Redis URL, e.g. redis://localhost:6379/0")
        if value is not None:
            SentinelUrl.parse(value)  # a malformed one raises, saying what is wrong
        return value


@dataclass(frozen=True)
class SentinelUrl:
    """REDIS_URL naming Sentinels: ``redis+sentinel://[[user]:password@]h1:p1,h2:p2/<master>[/<db>]``.

    The user and password are the Redis servers'; the Sentinels are asked without
    them (a Sentinel usually has none, and one without ``requirepass`` refuses AUTH).
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SentinelUrl | None:
        """None for the URL of one Redis; MalformedUrl if malformed."""
        scheme, _, rest = url.partition("://")
        if scheme != SENTINEL_SCHEME:
            return None
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        master, _, db = path.partition("/")
        if not master or not re.fullmatch(r"\d*", db):
            raise MalformedUrl(
                "a Sentinel URL names the master, and optionally a db number, after the"
                " Sentinels, e.g. redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster/0"
            )
        username, _, password = userinfo.partition(":")
        return cls(
            sentinels=tuple(_sentinel(host) for host in hosts.split(",")),
            master=unquote(master),
            db=int(db or 0),
            username=unquote(username) or None,
            password=unquote(password) or None,
        )

    @property
    def shown(self) -> str:
        """The URL for a person: no password."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        secret = ":***@" if self.password is not None else "@" if self.username else ""
        return f"{SENTINEL_SCHEME}://{self.username or ''}{secret}{hosts}/{self.master}/{self.db}"


class MalformedUrl(ValueError):
    """A URL this module parses itself is malformed; the message shows no secret."""


# One entry of a URL's host list: a name or an IPv4 address, or an IPv6 address in
# brackets; then an optional port.
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\[\]:/?#@,]+))(?::(?P<port>\d{1,5}))?"
)


def _host(given: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``: the host, and the port if given."""
    match = _HOST.fullmatch(given)
    port = None if match is None or match["port"] is None else int(match["port"])
    if match is None or port == 0 or (port or 0) > 65535:
        raise MalformedUrl(f"{given!r} is not host, host:port or [IPv6 address]:port")
    return unquote(match["v6"] or match["name"]), port


def _sentinel(given: str) -> tuple[str, int]:
    host, port = _host(given)
    return host, port or SENTINEL_PORT


def _sqlalchemy_url(value: str) -> str:
    """libpq's URI as SQLAlchemy's URL; any other URL as given.

    ``postgres://u:pw@h1:p1,h2:p2/db?opts`` (what `pg_autoctl show uri` prints)
    becomes ``postgresql+psycopg2://u:pw@/db?host=h1,h2&port=p1,p2&opts``: the
    hosts in the one query form SQLAlchemy reads IPv6 addresses from, every option
    kept. The user, password and options stay percent-encoded as given: libpq and
    SQLAlchemy decode them alike.
    """
    scheme, separator, rest = value.partition("://")
    if not separator or scheme not in LIBPQ_SCHEMES:
        return value
    netloc, path = re.fullmatch(r"([^/?]*)(.*)", rest, re.DOTALL).groups()  # type: ignore[union-attr]
    userinfo, at, hostlist = netloc.rpartition("@")
    if "," not in hostlist:
        return f"postgresql://{rest}"  # one host: SQLAlchemy reads it (`postgres` is libpq's alias)
    hosts = [_host(given) for given in hostlist.split(",")]
    database, _, options = path.partition("?")
    if {key for key, _ in parse_qsl(options)} & {"host", "hostaddr", "port"}:
        raise MalformedUrl("the hosts are named both before the database and in its options")
    query = ["host=" + ",".join(quote(host, safe=":") for host, _ in hosts)]
    if any(port is not None for _, port in hosts):
        query.append("port=" + ",".join("" if port is None else str(port) for _, port in hosts))
    query += [options] if options else []
    return f"postgresql+psycopg2://{userinfo}{at}{database or '/'}?{'&'.join(query)}"


def _describe(error: ValidationError) -> str:
    """One line per problem, each naming the environment variable."""
    problems = []
    for detail in error.errors(include_url=False):
        name = str(detail["loc"][0]) if detail["loc"] else "?"
        given = detail.get("input")
        message = str(detail["msg"]).removeprefix("Value error, ")
        if detail["type"] in ("int_parsing", "int_from_float"):
            message = "must be a whole number"
        if detail["type"] == "string_pattern_mismatch":
            message = _PATTERN_PROBLEMS.get(name, message)
        shown = "" if name in SECRETS else f" (got {given!r})"
        problems.append(f"{name}: {message}{shown}")
    return "; ".join(problems)


_PATTERN_PROBLEMS = {
    "ALERTS_FROM": "not one e-mail address, e.g. stock@example.com",
    "ALERTS_TO": "not one e-mail address, e.g. stock@example.com",
    "SMTP_HOST": "not a host name or address, e.g. mail.example.com",
    "CONSUMER_NAME": "must be printable ASCII with no spaces",
}
