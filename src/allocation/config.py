"""Settings read once from the environment by an entrypoint, then passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///allocation.sqlite3"


class ConfigError(ValueError):
    """A setting in the environment is malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    alerts_from: str = "allocation@localhost"
    alerts_to: str = "stock@localhost"
    log_level: str = "INFO"
    log_format: str = "text"
    max_request_bytes: int = 64 * 1024
    commit_attempts: int = 10
    api_token: str | None = None
    stream_maxlen: int = 100_000
    relay_batch_size: int = 100
    relay_poll_seconds: float = 1.0
    relay_linger_seconds: float = 0.02
    outbox_retention_hours: int = 168
    consumer_name: str | None = None
    consumer_max_attempts: int = 5
    consumer_claim_idle_ms: int = 30_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def text(name: str, default: str | None) -> str | None:
            value = environ.get(name, "").strip()
            return value or default

        def number(name: str, default: int, minimum: int = 1) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {value}")
            return value

        def choice(name: str, allowed: tuple[str, ...]) -> str:
            value = (text(name, allowed[0]) or allowed[0]).lower()
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            return value

        return cls(
            database_url=text("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
            redis_url=text("REDIS_URL", None),
            smtp_host=text("SMTP_HOST", None),
            smtp_port=number("SMTP_PORT", 25),
            alerts_from=text("ALERTS_FROM", cls.alerts_from) or cls.alerts_from,
            alerts_to=text("ALERTS_TO", cls.alerts_to) or cls.alerts_to,
            log_level=(text("LOG_LEVEL", "INFO") or "INFO").upper(),
            log_format=choice("LOG_FORMAT", ("text", "json")),
            max_request_bytes=number("MAX_REQUEST_BYTES", 64 * 1024),
            commit_attempts=number("COMMIT_ATTEMPTS", 10),
            api_token=text("API_TOKEN", None),
            stream_maxlen=number("STREAM_MAXLEN", 100_000),
            relay_batch_size=number("RELAY_BATCH_SIZE", 100),
            relay_poll_seconds=number("RELAY_POLL_MS", 1000) / 1000,
            relay_linger_seconds=number("RELAY_LINGER_MS", 20, minimum=0) / 1000,
            outbox_retention_hours=number("OUTBOX_RETENTION_HOURS", 168),
            consumer_name=text("CONSUMER_NAME", None),
            consumer_max_attempts=number("CONSUMER_MAX_ATTEMPTS", 5),
            consumer_claim_idle_ms=number("CONSUMER_CLAIM_IDLE_MS", 30_000),
        )
