import pytest

from allocation import bootstrap
from allocation.config import DEFAULT_DATABASE_URL, ConfigError, Settings


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
