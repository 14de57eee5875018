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
    max_request_bytes: int = 64 * 1024
    commit_attempts: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def text(name: str, default: str | None) -> str | None:
            value = environ.get(name, "").strip()
            return value or default

        def number(name: str, default: int) -> int:
            raw = text(name, None)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
            return value

        return cls(
            database_url=text("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
            redis_url=text("REDIS_URL", None),
            smtp_host=text("SMTP_HOST", None),
            smtp_port=number("SMTP_PORT", 25),
            alerts_from=text("ALERTS_FROM", cls.alerts_from) or cls.alerts_from,
            alerts_to=text("ALERTS_TO", cls.alerts_to) or cls.alerts_to,
            log_level=(text("LOG_LEVEL", "INFO") or "INFO").upper(),
            max_request_bytes=number("MAX_REQUEST_BYTES", 64 * 1024),
            commit_attempts=number("COMMIT_ATTEMPTS", 10),
        )
