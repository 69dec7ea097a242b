"""One settings object for the whole service (environment variables prefixed ``DSR_``)."""

from __future__ import annotations

import base64
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "prod"]

# Key material the service cannot run without. In dev/test a missing key is generated once and
# kept in the data dir; in prod a missing key stops start-up.
KEY_FIELDS = ("token_signing_key", "field_encryption_key", "blind_index_key")


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSR_", extra="ignore")

    env: Environment = "dev"
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts an embedded server in data_dir"
    )
    data_dir: Path = Path(".dsr")
    log_level: str = "INFO"
    public_base_url: str = "http://127.0.0.1:8000"

    # Key material: 32 random bytes, base64 (url-safe or standard).
    token_signing_key: str | None = None
    field_encryption_key: str | None = None
    blind_index_key: str | None = None

    # HTTP
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10

    # SMS / e-mail gateway (HTTP). In dev with no URL, messages are printed to the console.
    sms_gateway_url: str | None = None
    email_gateway_url: str | None = None
    gateway_token: str | None = None
    notice_max_attempts: int = 12
    default_locale: Literal["ko", "en"] = "ko"

    # Processors' webhooks (see docs/webhooks.md)
    allow_private_webhooks: bool = Field(
        default=False, description="allow webhook URLs on private/loopback addresses (tests, demo)"
    )
    webhook_timeout_seconds: float = Field(default=15.0, description="total time for one attempt")
    webhook_connect_timeout_seconds: float = 5.0
    webhook_secret_grace_hours: float = Field(
        default=24.0, description="after a rotation the previous secret still signs this long"
    )
    webhook_max_concurrency_per_processor: int = Field(
        default=8, description="attempts in flight at once to one processor, per worker process"
    )
    webhook_max_concurrency: int = Field(
        default=32, description="attempts in flight at once per worker process, all processors"
    )
    webhook_disable_after_failing_days: float = 5.0
    webhook_ack_follow_up_days: float = Field(
        default=3.0, description="delivered notices not acknowledged after this are followed up"
    )
    webhook_processor_cache_seconds: float = Field(
        default=2.0, description="how long a worker reuses a processor's settings (0: never)"
    )
    privacy_officer_email: str | None = Field(
        default=None, description="where alerts go (dead webhooks, notices held for a processor)"
    )

    # Worker
    run_worker: bool = Field(default=True, description="run the worker loop inside `dsr serve`")
    worker_poll_seconds: float = 1.0
    worker_batch_size: int = 50
    worker_lease_seconds: int = 60

    def key_bytes(self, name: str) -> bytes:
        """The named key as bytes; raises ConfigError naming the setting when missing."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"DSR_{name.upper()} is not set")
        return _decode_key(value, name)


def _decode_key(value: str, name: str) -> bytes:
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except ValueError as exc:
        raise ConfigError(f"DSR_{name.upper()} is not valid base64") from exc
    if len(raw) < 32:
        raise ConfigError(f"DSR_{name.upper()} must be at least 32 bytes of key material")
    return raw


def new_key() -> str:
    """A fresh 32-byte key, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def ensure_keys(settings: Settings) -> Settings:
    """Fill missing keys: generated into data_dir/keys.json (0600) in dev/test, refused in prod."""
    missing = [name for name in KEY_FIELDS if not getattr(settings, name)]
    if not missing:
        for name in KEY_FIELDS:
            settings.key_bytes(name)
        return settings
    if settings.env == "prod":
        names = ", ".join(f"DSR_{name.upper()}" for name in missing)
        raise ConfigError(f"{names} must be set when DSR_ENV=prod")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "keys.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for name in missing:
        if name not in stored:
            stored[name] = new_key()
            changed = True
    if changed:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle, indent=2)
    os.chmod(path, 0o600)
    update = {name: stored[name] for name in missing}
    filled = settings.model_copy(update=update)
    for name in KEY_FIELDS:
        filled.key_bytes(name)
    return filled


def check_production(settings: Settings) -> None:
    """Refuse settings that are only safe for development when DSR_ENV=prod."""
    if settings.env != "prod":
        return
    if not settings.database_url:
        raise ConfigError("DSR_DATABASE_URL must be set when DSR_ENV=prod")
    for name in ("sms_gateway_url", "email_gateway_url"):
        if not getattr(settings, name):
            raise ConfigError(f"DSR_{name.upper()} must be set when DSR_ENV=prod")


@lru_cache
def get_settings() -> Settings:
    """The process settings, read once from the environment; tests build their own."""
    return Settings()
