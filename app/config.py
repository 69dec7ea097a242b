"""One settings object for the whole service (environment variables prefixed ``DSR_``)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "prod"]

# Key material the service cannot run without. In dev/test a missing key is generated once and
# kept in the data dir; in prod a missing key stops start-up.
KEY_FIELDS = ("token_signing_key", "field_encryption_key", "blind_index_key")
REQUEST_TYPES = ("access", "correction", "deletion", "suspension", "consent_withdrawal")


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


class RetentionSetting(BaseModel):
    """One DSR_RETENTION_RULES entry, parsed into ``app.retention.rules.RetentionRule``."""

    period: str = Field(description="'5y', '3m', '12m' (at least one month)")
    legal_basis_ko: str = Field(min_length=1)
    legal_basis_en: str = Field(min_length=1)

    @field_validator("period")
    @classmethod
    def _period(cls, value: str) -> str:
        # Imported here: the rules module imports the vocabulary, which imports this module.
        from app.retention.rules import parse_period

        parse_period(value, setting="DSR_RETENTION_RULES")
        return value


_ECOMMERCE = (
    "전자상거래 등에서의 소비자보호에 관한 법률",
    "Act on the Consumer Protection in Electronic Commerce",
)
_SECRETS = ("통신비밀보호법", "Protection of Communications Secrets Act")


def default_retention_rules() -> dict[str, RetentionSetting]:
    """The privacy policy's section 2 table, one named rule per row."""
    table = {
        "transactions": ("5y", ("국세기본법", "Framework Act on National Taxes")),
        "contracts": ("5y", _ECOMMERCE),
        "complaints": ("3y", _ECOMMERCE),
        "service_calls": ("3m", _SECRETS),
        "advertising": ("6m", _ECOMMERCE),
        "access_logs_3m": ("3m", _SECRETS),
        "access_logs_12m": ("12m", _SECRETS),
    }
    return {
        name: RetentionSetting(period=period, legal_basis_ko=ko, legal_basis_en=en)
        for name, (period, (ko, en)) in table.items()
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DSR_", extra="ignore")

    env: Environment = "dev"
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset starts an embedded server in data_dir"
    )
    data_dir: Path = Path(".dsr")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] | None = Field(
        default=None, description="text (a readable line) or json; unset: text in dev, else json"
    )
    public_base_url: str = "http://127.0.0.1:8000"

    # Key material: 32 random bytes, base64 (url-safe or standard).
    token_signing_key: str | None = None
    field_encryption_key: str | None = None
    blind_index_key: str | None = None

    # HTTP
    max_body_bytes: int = 1_048_576
    db_pool_size: int = 10

    # Web pages (/privacy/, /console/) and browsers
    frame_ancestors: str = Field(
        default="'none'",
        pattern=r"^[A-Za-z0-9'*:/._ -]{1,500}$",
        description="CSP frame-ancestors sources allowed to embed the pages ('none': nobody)",
    )
    cors_origins: list[str] = Field(
        default=[],
        description='origins whose front-ends may call the API (JSON: ["https://www.example.com"])',
    )
    cookie_secure: bool | None = Field(
        default=None, description="mark page cookies Secure; unset: Secure outside dev"
    )

    # SMS / e-mail gateway (HTTP). In dev with no URL, messages are printed to the console.
    sms_gateway_url: str | None = None
    email_gateway_url: str | None = None
    gateway_token: str | None = None
    notice_max_attempts: int = 12
    default_locale: Literal["ko", "en"] = "ko"

    # Request lifecycle (PIPA Decree Arts. 41(4), 43(3), 44(2): answer within 10 days)
    due_days: dict[str, int] = Field(
        default_factory=lambda: dict.fromkeys(REQUEST_TYPES, 10),
        description="days to answer, per request type (1-10; the law's ceiling is 10)",
    )
    display_timezone: str = "Asia/Seoul"
    auto_approve_access: bool = Field(
        default=True, description="approve access requests verified by one-time code at intake"
    )
    extension_max_days: int = Field(default=60, ge=1, le=365)
    single_officer_refusals: bool = Field(
        default=False,
        description="let a privacy officer refuse without a colleague's proposal (one officer)",
    )
    objection_window_days: int = Field(default=30, ge=1, le=365)
    objection_due_days: int = Field(default=10, ge=1, le=30)
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    contact_text_ko: str = "상황관리팀 (02-2620-1100)"
    contact_text_en: str = "Situation Management Team (+82-2-2620-1100)"
    audit_retention_days: int = Field(
        default=730, ge=730, description="audit entries are kept at least this long (2 years+)"
    )

    # Identity verification by one-time code (docs/verification.md). Limits are per sliding window.
    verification_code_ttl_seconds: int = 300
    verification_max_wrong_attempts: int = 5
    verification_resend_cooldown_seconds: int = 60
    verification_window_seconds: int = 3600
    verification_max_per_destination: int = 5
    verification_max_per_client_ip: int = 20
    verification_sms_regions: list[str] = Field(
        default=["KR"], description="countries whose mobile numbers may receive codes by SMS"
    )
    verification_notice_max_attempts: int = 4
    verification_retention_hours: int = 24
    subject_token_ttl_seconds: int = 1800

    # Bearer tokens from other issuers (app/security.py). Leeway applies to exp/nbf/iat.
    token_leeway_seconds: int = 30
    token_max_bytes: int = 8192
    jwks_cache_seconds: int = 3600
    jwks_min_refresh_seconds: int = 60
    # Staff and service tokens from the company identity provider: a JWKS URL or a static key.
    staff_idp_issuer: str | None = None
    staff_idp_audience: str | None = None
    staff_idp_jwks_url: str | None = None
    staff_idp_public_key: str | None = Field(default=None, description="PEM public key")
    staff_idp_key_id: str | None = None
    staff_idp_algorithms: list[str] = Field(default=["RS256", "ES256"])
    staff_idp_roles_claim: str = "roles"
    staff_idp_role_map: dict[str, str] = Field(
        default_factory=dict, description="IdP role name -> our role; unset: names as ours"
    )
    # Optional: the mobile app's own session token with a verified phone counts as an OTP.
    # The support console's sign-in (OpenID Connect, code + PKCE, at DSR_STAFF_IDP_ISSUER)
    console_oidc_client_id: str | None = Field(
        default=None, description="the console's client id at the staff identity provider"
    )
    console_oidc_client_secret: str | None = Field(
        default=None, description="its secret, for a confidential client (PKCE is always used)"
    )
    console_session_hours: float = Field(default=8.0, gt=0, le=24)

    mobile_tokens_enabled: bool = False
    mobile_token_issuer: str | None = None
    mobile_token_audience: str | None = None
    mobile_jwks_url: str | None = None
    mobile_public_key: str | None = Field(default=None, description="PEM public key")
    mobile_key_id: str | None = None
    mobile_algorithms: list[str] = Field(default=["RS256", "ES256"])
    mobile_phone_claim: str = "phone_number"
    mobile_phone_verified_claim: str = "phone_number_verified"

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
    demo_partner_url: str = Field(
        default="http://127.0.0.1:8900",
        description="where the demo's processors send webhooks (`dsr demo-partner`)",
    )
    privacy_officer_email: str | None = Field(
        default=None, description="where alerts go (dead webhooks, notices held for a processor)"
    )
    staff_email_template: str | None = Field(
        default=None,
        description="a staff member's address from their user id, e.g. `{sub}@example.com` "
        "(the daily digest to each request's owner)",
    )
    sla_digest_hour: int = Field(default=9, ge=0, le=23, description="local hour of the digest")
    sla_digest_within_days: int = Field(default=2, ge=0, le=10)
    partner_reminder_days: float = Field(
        default=3.0, gt=0, description="an e-mailed notice not confirmed is sent again this often"
    )
    partner_escalation_days: float = Field(
        default=7.0, gt=0, description="not confirmed after this: the privacy officer is told"
    )
    partner_confirm_link_days: float = Field(
        default=14.0, gt=0, description="how long a confirmation link in a partner e-mail works"
    )

    # Worker
    run_worker: bool = Field(default=True, description="run the worker loop inside `dsr serve`")
    worker_poll_seconds: float = 1.0
    worker_listen: bool = Field(
        default=True,
        description="wake idle workers with LISTEN/NOTIFY when a message is queued; "
        "the poll interval stays the fallback",
    )
    worker_batch_size: int = 50
    worker_lease_seconds: int = 60
    outbox_payload_retention_days: int = Field(
        default=3,
        ge=0,
        description="days a delivered or dead message keeps its payload (replay), then destroyed",
    )
    outbox_retention_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="payloads destroyed per transaction"
    )

    # Data map and access reports
    datamap_path: Path | None = Field(
        default=None,
        description="data map YAML; unset: data_dir/datamap.yaml (`dsr demo` writes it)",
    )
    access_report_ttl_days: int = Field(
        default=30, ge=1, description="days an access report can be downloaded before it is purged"
    )

    @field_validator("due_days")
    @classmethod
    def _check_due_days(cls, value: dict[str, int]) -> dict[str, int]:
        merged = dict.fromkeys(REQUEST_TYPES, 10) | value
        unknown = set(merged) - set(REQUEST_TYPES)
        if unknown:
            raise ValueError(f"unknown request types: {sorted(unknown)}")
        if any(not 1 <= days <= 10 for days in merged.values()):
            raise ValueError("each type's days must be between 1 and 10")
        return merged

    # Retention (privacy policy section 2). DSR_RETENTION_RULES (JSON) overrides or adds rules
    # by name; the others keep their defaults.
    retention_rules: dict[str, RetentionSetting] = Field(default_factory=default_retention_rules)
    retention_purge_batch_size: int = Field(default=1000, ge=1, le=50_000)

    @field_validator("retention_rules", mode="after")
    @classmethod
    def _keep_default_rules(cls, value: dict[str, RetentionSetting]) -> dict[str, RetentionSetting]:
        return {**default_retention_rules(), **value}

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value

    @property
    def secure_cookies(self) -> bool:
        return self.env != "dev" if self.cookie_secure is None else self.cookie_secure

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
    check_token_issuers(settings)


# Algorithms another issuer may use: asymmetric only, so a public key can never act as a secret.
EXTERNAL_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"})


def check_token_issuers(settings: Settings) -> None:
    """Refuse an identity-provider set-up that could not verify a token safely."""
    prod = settings.env == "prod"
    checks = [("staff_idp", "staff_idp_issuer", "staff_idp_audience")]
    if settings.mobile_tokens_enabled:
        checks.append(("mobile", "mobile_token_issuer", "mobile_token_audience"))
    for prefix, issuer_field, audience_field in checks:
        jwks_url = getattr(settings, f"{prefix}_jwks_url")
        public_key = getattr(settings, f"{prefix}_public_key")
        issuer = getattr(settings, issuer_field)
        if prefix == "staff_idp" and not prod and not (issuer or jwks_url or public_key):
            continue  # dev/test without an identity provider: staff use `dsr token`
        if not issuer or not getattr(settings, audience_field):
            raise ConfigError(
                f"DSR_{issuer_field.upper()} and DSR_{audience_field.upper()} must be set"
            )
        if bool(jwks_url) == bool(public_key):
            raise ConfigError(
                f"exactly one of DSR_{prefix.upper()}_JWKS_URL and "
                f"DSR_{prefix.upper()}_PUBLIC_KEY must be set"
            )
        if prod and jwks_url and not str(jwks_url).startswith("https://"):
            raise ConfigError(f"DSR_{prefix.upper()}_JWKS_URL must be https when DSR_ENV=prod")
        algorithms = set(getattr(settings, f"{prefix}_algorithms"))
        if not algorithms or not algorithms <= EXTERNAL_ALGORITHMS:
            raise ConfigError(
                f"DSR_{prefix.upper()}_ALGORITHMS may only name "
                + ", ".join(sorted(EXTERNAL_ALGORITHMS))
            )


@lru_cache
def get_settings() -> Settings:
    """The process settings, read once from the environment; tests build their own."""
    return Settings()
