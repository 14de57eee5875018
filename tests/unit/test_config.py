import pytest

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
