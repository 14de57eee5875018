import pytest
from redis.sentinel import SentinelConnectionPool
from sqlalchemy.engine import make_url

from allocation import bootstrap
from allocation.config import DEFAULT_DATABASE_URL, ConfigError, SentinelUrl, Settings


def test_defaults_need_nothing_installed() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url is None
    assert settings.smtp_host is None


def test_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://db/x",
            "REDIS_URL": "redis://r:6379/1",
            "SMTP_HOST": "mail",
            "SMTP_PORT": "2525",
            "LOG_LEVEL": "debug",
            "MAX_REQUEST_BYTES": "100",
            "COMMIT_ATTEMPTS": "3",
        }
    )
    assert settings == Settings(
        database_url="postgresql://db/x",
        redis_url="redis://r:6379/1",
        smtp_host="mail",
        smtp_port=2525,
        log_level="DEBUG",
        max_request_bytes=100,
        commit_attempts=3,
    )


@pytest.mark.parametrize("name", ["SMTP_PORT", "MAX_REQUEST_BYTES", "COMMIT_ATTEMPTS"])
def test_a_malformed_number_names_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "lots"})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"DATABASE_URL": "notaurl"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({"REDIS_URL": "foo://bar"}, "REDIS_URL"),
        ({"RELAY_LINGER_MS": "-1"}, "RELAY_LINGER_MS"),
        ({"COMMIT_ATTEMPTS": "0"}, "COMMIT_ATTEMPTS"),
    ],
)
def test_a_malformed_value_names_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=f"^{named}: "):
        Settings.from_env(environ)


def test_an_error_never_shows_a_secret() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"DATABASE_URL": "oracle://admin:hunter2@db/x"})
    assert "hunter2" not in str(raised.value)


def test_blank_values_keep_the_default_and_case_is_forgiven() -> None:
    settings = Settings.from_env(
        {"LOG_LEVEL": " debug ", "LOG_FORMAT": "JSON", "SMTP_HOST": "  ", "RELAY_POLL_MS": "250"}
    )
    assert (settings.log_level, settings.log_format, settings.smtp_host) == ("DEBUG", "json", None)
    assert settings.relay_poll_seconds == 0.25


@pytest.mark.parametrize("password", ["p@ss/w:rd%", "%40%2F", "a b+c#d?e&f=g", " spaced "])
def test_database_password_becomes_the_engine_urls_password(password: str) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg2://app:old@db:5432/stock",
            "DATABASE_PASSWORD": password,
        }
    )
    engine = bootstrap.make_engine(settings)
    try:
        url = engine.url
        assert (url.username, url.password, url.host, url.port) == ("app", password, "db", 5432)
        assert url.database == "stock"
    finally:
        engine.dispose()


def test_without_database_password_the_url_is_kept() -> None:
    url = "postgresql+psycopg2://app:p%40ss@db/stock"
    assert Settings.from_env({"DATABASE_URL": url, "DATABASE_PASSWORD": " "}).database_url == url


def test_the_database_password_is_never_shown() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"DATABASE_URL": "oracle://admin@db/x", "DATABASE_PASSWORD": "hunter2"})
    assert "hunter2" not in str(raised.value)
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://admin@db/x", "DATABASE_PASSWORD": "hunter2"}
    )
    assert "hunter2" not in repr(settings)


# Every variable, and a malformed value of it (or why none exists).
MALFORMED = {
    "DATABASE_URL": ("postgresql://u@h:notaport/db", "not a database URL"),
    "REDIS_URL": ("foo://bar", "not a Redis URL"),
    "SMTP_HOST": ("mail example.com", "not a host name"),
    "SMTP_PORT": ("25.5", "must be a whole number"),
    "ALERTS_FROM": ("ops@example.com\nBcc: x@evil", "not one e-mail address"),
    "ALERTS_TO": ("a@example.com, b@example.com", "not one e-mail address"),
    "LOG_LEVEL": ("LOUD", "Input should be 'DEBUG'"),
    "LOG_FORMAT": ("xml", "Input should be 'text' or 'json'"),
    "MAX_REQUEST_BYTES": ("0", "greater than or equal to 1"),
    "COMMIT_ATTEMPTS": ("many", "must be a whole number"),
    "STATEMENT_TIMEOUT_MS": ("-5", "greater than or equal to 0"),
    "STREAM_MAXLEN": ("1e5", "must be a whole number"),
    "RELAY_BATCH_SIZE": ("0", "greater than or equal to 1"),
    "RELAY_POLL_MS": ("soon", "must be a whole number"),
    "RELAY_LINGER_MS": ("-1", "greater than or equal to 0"),
    "RELAY_REPLICA_WAIT_MS": ("5000", "less than or equal to 4000"),
    "OUTBOX_RETENTION_HOURS": ("a week", "must be a whole number"),
    "CONSUMER_NAME": ("my consumer", "printable ASCII with no spaces"),
    "CONSUMER_MAX_ATTEMPTS": ("0", "greater than or equal to 1"),
    "CONSUMER_CLAIM_IDLE_MS": ("30s", "must be a whole number"),
    "HOLD_EXPIRY_POLL_MS": ("0", "greater than or equal to 1"),
}
# Any non-blank value is a good one: a secret is whatever it is.
ANY_VALUE = {"API_TOKEN", "DATABASE_PASSWORD"}


def test_every_variable_has_a_malformed_case() -> None:
    assert set(MALFORMED) | ANY_VALUE == set(Settings.variables())


@pytest.mark.parametrize(("name", "case"), MALFORMED.items())
def test_each_malformed_variable_is_named_with_its_problem(
    name: str, case: tuple[str, str]
) -> None:
    value, problem = case
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(f"{name}: ")
    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)


# What `pg_autoctl show uri --formation default` prints, and what libpq makes of it.
PG_AUTOCTL_URI = (
    "postgres://127.0.0.1:5432,127.0.0.1:5433/allocation"
    "?target_session_attrs=read-write&sslmode=prefer"
)


def connect_arguments(settings: Settings) -> dict[str, object]:
    """What the driver is given for the settings' database: hosts, ports, options."""
    engine = bootstrap.make_engine(settings)
    try:
        _, arguments = engine.dialect.create_connect_args(engine.url)
        return {k: v for k, v in arguments.items() if k in ("host", "port", "user", "password")}
    finally:
        engine.dispose()


def test_libpqs_multi_host_uri_is_taken_as_pg_autoctl_prints_it() -> None:
    settings = Settings.from_env({"DATABASE_URL": PG_AUTOCTL_URI})
    url = make_url(settings.database_url)
    assert (url.drivername, url.database) == ("postgresql+psycopg2", "allocation")
    assert url.query["target_session_attrs"] == "read-write"
    assert url.query["sslmode"] == "prefer"
    assert connect_arguments(settings) == {"host": "127.0.0.1,127.0.0.1", "port": "5432,5433"}


def test_sqlalchemys_multi_host_url_is_kept() -> None:
    given = "postgresql+psycopg2://app@/stock?host=db1:5432&host=db2:5433&target_session_attrs=read-write"
    settings = Settings.from_env({"DATABASE_URL": given})
    assert settings.database_url == given
    assert connect_arguments(settings) == {"host": "db1,db2", "port": "5432,5433", "user": "app"}


def test_libpq_hosts_may_be_ipv6_or_without_a_port_and_the_user_percent_encoded() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app%40corp:p%40ss%2Fw@[::1]:5433,db2/stock?connect_timeout=2"
        }
    )
    assert connect_arguments(settings) == {
        "host": "::1,db2",
        "port": "5433,",  # the second host's port is libpq's default
        "user": "app@corp",
        "password": "p@ss/w",
    }
    assert make_url(settings.database_url).query["connect_timeout"] == "2"


def test_one_host_in_libpqs_form_is_read_by_sqlalchemy_as_it_is() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgres://app@db:5433/stock?sslmode=require"})
    url = make_url(settings.database_url)
    assert (url.get_backend_name(), url.host, url.port) == ("postgresql", "db", 5433)


@pytest.mark.parametrize(
    "given",
    [
        PG_AUTOCTL_URI.replace("://", "://app@"),
        "postgresql+psycopg2://app@/s?host=a:1&host=b:2",
    ],
)
@pytest.mark.parametrize("password", ["p@ss/w:rd%", "a,b&c=d?e", " spaced "])
def test_database_password_works_with_either_multi_host_form(given: str, password: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": given, "DATABASE_PASSWORD": password})
    assert connect_arguments(settings)["password"] == password
    assert make_url(settings.database_url).password == password


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("postgres://h1:5432,h2:notaport/db", "'h2:notaport' is not host, host:port"),
        ("postgres://h1:5432,,h2/db", "'' is not host, host:port"),
        ("postgres://h1:5432,h2:70000/db", "'h2:70000' is not host, host:port"),
        ("postgres://h1,[::1/db", "'[::1' is not host, host:port"),
        ("postgres://h1,h2/db?host=h3", "named both before the database and in its options"),
        ("postgres://u:hunter2@h1,h2:x/db", "'h2:x' is not host"),
    ],
)
def test_a_malformed_multi_host_url_is_one_line_naming_the_variable(
    given: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"DATABASE_URL": given})
    message = str(raised.value)
    assert message.startswith("DATABASE_URL: not a database URL: ")
    assert problem in message
    assert "hunter2" not in message and "\n" not in message


def test_database_password_needs_a_user_in_the_url() -> None:
    """libpq's URI may name no user (the service would then connect as its own OS
    user), and a URL without a user has no place for the password."""
    with pytest.raises(ConfigError, match="^DATABASE_URL: names no user for DATABASE_PASSWORD"):
        Settings.from_env({"DATABASE_URL": PG_AUTOCTL_URI, "DATABASE_PASSWORD": "hunter2"})


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_db() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis+sentinel://:p%40ss%3Aw%2Frd@s1:26380,s2,[::1]:26381/stock-master/2"}
    )
    assert settings.redis_sentinel == SentinelUrl(
        sentinels=(("s1", 26380), ("s2", 26379), ("::1", 26381)),
        master="stock-master",
        db=2,
        password="p@ss:w/rd",
    )
    assert settings.shown_redis_url == (
        "redis+sentinel://:***@s1:26380,s2:26379,[::1]:26381/stock-master/2"
    )
    assert "p@ss" not in repr(settings)


def test_a_sentinel_url_may_name_a_user_and_no_db() -> None:
    sentinel = SentinelUrl.parse("redis+sentinel://app:pw@s1:1,s2:2,s3:3/mymaster")
    assert sentinel is not None
    assert (sentinel.username, sentinel.password, sentinel.db) == ("app", "pw", 0)
    assert SentinelUrl.parse("redis://localhost:6379/0") is None


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("redis+sentinel://s1:26379,s2:26379", "names the master"),
        ("redis+sentinel://s1:26379/", "names the master"),
        ("redis+sentinel://s1:26379/mymaster/zero", "names the master"),
        ("redis+sentinel://s1:26379/mymaster/0/1", "names the master"),
        ("redis+sentinel://:hunter2@s1:port/mymaster", "'s1:port' is not host, host:port"),
        ("redis+sentinel://s1,,s3/mymaster", "'' is not host"),
    ],
)
def test_a_malformed_sentinel_url_is_one_line_naming_the_variable(given: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"REDIS_URL": given})
    message = str(raised.value)
    assert message.startswith("REDIS_URL: ") and problem in message
    assert "hunter2" not in message and "\n" not in message


def test_the_client_of_a_sentinel_url_asks_the_sentinels_for_the_master() -> None:
    client = bootstrap.make_redis("redis+sentinel://:secret@127.0.0.1:1,127.0.0.1:2/mymaster/3")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert (pool.service_name, pool.connection_kwargs["db"]) == ("mymaster", 3)
    assert pool.connection_kwargs["password"] == "secret"
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [1, 2]
    # The Sentinels get no password, and no client retries inside redis-py: the
    # relay's and the consumer's loops do, with their own backoff.
    for sentinel in sentinels:
        assert sentinel.connection_pool.connection_kwargs.get("password") is None
        assert sentinel.connection_pool.connection_kwargs["retry"].get_retries() == 0
    assert pool.connection_kwargs["retry"].get_retries() == 0


def test_a_plain_redis_url_keeps_its_client() -> None:
    client = bootstrap.make_redis("redis://127.0.0.1:6379/0")
    assert not isinstance(client.connection_pool, SentinelConnectionPool)
