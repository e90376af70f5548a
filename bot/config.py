"""Configuration in one place: environment variables and `.env`, validated at start-up."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Annotated
from urllib.parse import unquote
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode
from pydantic_settings import SettingsConfigDict

from core.clock import is_zone
from core.clock import named_zone
from core.enums import Role
from core.quota import Policy

LANGUAGES = ("zh-Hans", "zh-Hant", "en")
INVITATION_MAX_HOURS = 24 * 90  # an invitation link is valid at most 90 days


def async_database_url(value: str) -> str:
    """Accept the plain URLs operators paste and pick the async driver for them.

    Shared by DATABASE_URL and the tests' TEST_POSTGRES_URL, so both take the same forms.
    """
    for plain, asynchronous in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if value.startswith(plain):
            return asynchronous + value[len(plain):]
    if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise ValueError("must be a sqlite:/// or postgresql:// URL")
    return value


class BotMode(StrEnum):
    polling = "polling"
    webhook = "webhook"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    bot_token: SecretStr | None = None
    # Relative to the working directory (as .env.example and the README say), so an
    # installed wheel keeps its database where it runs, not inside site-packages.
    database_url: str = "sqlite+aiosqlite:///data/liaison_desk.db"
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str | None = None
    bot_timezone: str = "Asia/Shanghai"
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    default_language: str = "zh-Hans"
    log_level: str = "INFO"
    log_format: str = "text"

    bot_mode: BotMode = BotMode.polling
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_secret: SecretStr | None = None
    # Polling refuses to start while a webhook is set (other processes serve it); true
    # takes the updates over from them (deleteWebhook). docs/deployment.md.
    polling_deletes_webhook: bool = False
    # Start-up while Telegram is unreachable: retry getMe, waiting from min to max seconds.
    telegram_retry_min_seconds: float = Field(default=1.0, gt=0, le=600)
    telegram_retry_max_seconds: float = Field(default=60.0, gt=0, le=3600)

    # Several processes on PostgreSQL (docs/deployment.md): how often the scheduler
    # leader renews its lease and a follower tries to take an expired one; how long a
    # lease lasts unrenewed (a frozen leader is replaced within lease + retry seconds).
    # DELIVERY_RATE: the bot's messages a second, every process and every kind of
    # message together (bot/ratebudget/); the outbox's claimed rows are renewed every
    # third of DELIVERY_LEASE_SECONDS (a dead process's rows go out again within one lease).
    leader_retry_seconds: float = Field(default=5.0, gt=0, le=20)
    leader_lease_seconds: float = Field(default=15.0, gt=0, le=120)
    delivery_rate: int = Field(default=30, ge=1, le=1000)
    delivery_lease_seconds: float = Field(default=15.0, ge=3, le=3600)
    delivery_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Updates handled at once (each person's and each chat's still one at a time).
    update_concurrency: int = Field(default=32, ge=1, le=1024)

    invitation_ttl_hours: int = Field(default=72, ge=1, le=INVITATION_MAX_HOURS)
    ack_deadline_flash_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)
    ack_deadline_urgent_minutes: int = Field(default=120, ge=1, le=7 * 24 * 60)
    ack_deadline_routine_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60)
    schedule_grace_minutes: int = Field(default=15, ge=0, le=24 * 60)
    notice_ack_remind_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    notice_status_edit_seconds: float = Field(default=3.0, ge=0, le=600)
    load_sample_data: bool = True
    # The audit log (docs/security.md): entries older than this many days are archived
    # daily to a gzip file in AUDIT_ARCHIVE_DIR (relative to the working directory, as
    # the database's default) and removed from the database.
    audit_retention_days: int = Field(default=190, ge=1, le=100 * 366)
    audit_archive_dir: str = "data/audit"

    # Lookup quotas (core/quota.py, docs/security.md): distinct contact cards and duty
    # lines a person may be shown in any rolling hour and 24 hours (re-reading one
    # already shown in the window is free; every limit stays above a page of results);
    # an alert when items of BURST_UNITS units come within BURST_MINUTES, or one search
    # is paged through PAGING_PAGES pages in a row. Coordinators and administrators have
    # LOOKUP_COORDINATOR_FACTOR times the quotas and burst units.
    lookup_quota_hour: int = Field(default=60, ge=10, le=100_000)
    lookup_quota_day: int = Field(default=300, ge=10, le=1_000_000)
    lookup_burst_units: int = Field(default=12, ge=2, le=10_000)
    lookup_burst_minutes: int = Field(default=10, ge=1, le=24 * 60)
    lookup_paging_pages: int = Field(default=4, ge=2, le=1000)
    lookup_coordinator_factor: int = Field(default=3, ge=1, le=100)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError("must be comma-separated Telegram user ids (integers)") from None
        return value

    @field_validator("bot_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_zone(value):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)")
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"text", "json"}:
            raise ValueError("must be text or json")
        return value

    @field_validator("leader_lease_seconds")
    @classmethod
    def _lease_outlasts_renewals(cls, value: float, info: ValidationInfo) -> float:
        retry = info.data.get("leader_retry_seconds")
        if retry is not None and value < 2 * retry:
            raise ValueError(f"must be at least twice LEADER_RETRY_SECONDS ({retry:g}), so "
                             "one late renewal does not end the lease")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return async_database_url(value)

    @field_validator("lookup_quota_day")
    @classmethod
    def _day_holds_an_hour(cls, value: int, info: ValidationInfo) -> int:
        hour = info.data.get("lookup_quota_hour")
        if hour is not None and value < hour:
            raise ValueError(f"must be at least LOOKUP_QUOTA_HOUR ({hour})")
        return value

    def lookup_policy(self, role: Role | None) -> Policy:
        """The lookup quotas of a person of `role` (coordinators and administrators: the
        factor's multiple)."""
        policy = Policy(hour=self.lookup_quota_hour, day=self.lookup_quota_day,
                        burst_units=self.lookup_burst_units,
                        burst_minutes=self.lookup_burst_minutes,
                        paging_pages=self.lookup_paging_pages)
        if role is not None and role.at_least(Role.coordinator):
            return policy.scaled(self.lookup_coordinator_factor)
        return policy

    @property
    def timezone(self) -> ZoneInfo:
        return named_zone(self.bot_timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def token_value(self) -> str | None:
        return self.bot_token.get_secret_value() if self.bot_token else None

    def log_secrets(self) -> list[str]:
        """What the logs never show (bot/logs.py redacts it): the bot token, the webhook
        secret and the database password (as written in the URL, and decoded)."""
        secrets = [self.token_value() or ""]
        if self.webhook_secret:
            secrets.append(self.webhook_secret.get_secret_value())
        with contextlib.suppress(ValueError):
            password = urlsplit(self.database_url).password
            if password:
                secrets += [password, unquote(password)]
        return [secret for secret in secrets if secret]


class ConfigError(Exception):
    """A configuration problem worded for the operator, one line, naming the variable."""


def load_settings(**overrides: object) -> Settings:
    try:
        # pydantic validates the overrides (tests and the CLI pass names and strings).
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
    if settings.bot_mode is BotMode.webhook and settings.token_value():
        if not settings.webhook_url:
            raise ConfigError("WEBHOOK_URL: required when BOT_MODE=webhook")
        if not settings.webhook_secret:
            raise ConfigError("WEBHOOK_SECRET: required when BOT_MODE=webhook")
    return settings
