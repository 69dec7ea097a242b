"""The data map: where a data subject's personal data lives, loaded from YAML and validated.

The map names sources (a PostgreSQL database or an internal HTTP service) and collections
(tables or resources). Each collection says in which roles a person appears in it (a delivery has
a sender and a recipient), which columns find them in that role, which fields are theirs, what
each field is (item and category), why it is held (purposes), how long (retention rule), how it
is erased, and which processors it was handed to. See docs/datamap.md for the format.

Table and column names come from the file: they are checked here and always quoted as
identifiers by the connectors; values are always bound parameters.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.config import ConfigError, default_retention_rules

logger = logging.getLogger("dsr.datamap")

SELF_DSN = "self"  # a postgres source whose DSN is this value reads the service's own database
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_MAX_IDENTIFIER_BYTES = 63


class Text(BaseModel):
    """A label in Korean and English (texts reaching a data subject come in both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ko: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.en if lang == "en" else self.ko


# --- Vocabulary: purposes, items, categories, roles, retention rules, withholding grounds -----

Purpose = Literal[
    "delivery", "customs_clearance", "counseling", "app_service", "marketing", "service_logs"
]
PURPOSES: dict[str, Text] = {
    "delivery": Text(
        ko="택배 서비스 제공(계약 체결·이행, 배송, 요금 정산, 사고 처리 및 보상)",
        en="Delivery service (contract, delivery of goods, payment, accident handling)",
    ),
    "customs_clearance": Text(ko="수출입 통관", en="Customs clearance for import and export"),
    "counseling": Text(
        ko="고객 상담(본인 확인, 사실 확인을 위한 연락, 처리 결과 안내)",
        en="Customer counseling (identification, contact, result of handling)",
    ),
    "app_service": Text(
        ko="모바일 앱 서비스(고객 식별, 배송 조회·예약, 푸시 알림)",
        en="Mobile app service (identification, tracking and reservation, push messages)",
    ),
    "marketing": Text(
        ko="마케팅 및 이벤트 안내(선택 동의)", en="Marketing and events (optional consent)"
    ),
    "service_logs": Text(
        ko="서비스 이용 기록 보관(통신사실확인자료)", en="Service use records (access logs)"
    ),
}

Category = Literal["identity", "contact", "identification", "device", "service_log", "content"]
CATEGORIES: dict[str, Text] = {
    "identity": Text(ko="신원 정보", en="Identity"),
    "contact": Text(ko="연락처 정보", en="Contact details"),
    "identification": Text(ko="고유식별·통관 정보", en="Identification and customs"),
    "device": Text(ko="기기 정보", en="Device"),
    "service_log": Text(ko="서비스 이용 기록", en="Service use records"),
    "content": Text(ko="상담·문의 내용", en="Counseling content"),
}


@dataclass(frozen=True)
class ItemKind:
    label: Text
    category: str


ITEMS: dict[str, ItemKind] = {
    "name": ItemKind(Text(ko="이름", en="Name"), "identity"),
    "company_name": ItemKind(Text(ko="회사명", en="Company name"), "identity"),
    "phone": ItemKind(Text(ko="전화번호", en="Phone number"), "contact"),
    "email": ItemKind(Text(ko="이메일", en="E-mail"), "contact"),
    "address": ItemKind(Text(ko="주소", en="Address"), "contact"),
    "company_address": ItemKind(Text(ko="회사 주소", en="Company address"), "contact"),
    "customs_code": ItemKind(
        Text(ko="개인통관고유부호", en="Personal customs clearance code"), "identification"
    ),
    "device_serial": ItemKind(Text(ko="기기 일련번호", en="Device serial number"), "device"),
    "ip_address": ItemKind(Text(ko="접속 IP 주소", en="IP address"), "service_log"),
    "access_time": ItemKind(Text(ko="접속 일시", en="Date and time of access"), "service_log"),
    "service_use": ItemKind(Text(ko="서비스 이용 기록", en="Record of service use"), "service_log"),
    "inquiry": ItemKind(Text(ko="문의 내용", en="Inquiry"), "content"),
}

ROLES: dict[str, Text] = {
    "sender": Text(ko="보내는 분", en="Sender"),
    "recipient": Text(ko="받는 분", en="Recipient"),
    "customer": Text(ko="고객", en="Customer"),
    "user": Text(ko="앱 이용자", en="App user"),
    "subscriber": Text(ko="수신 동의자", en="Subscriber"),
    "account": Text(ko="계정 이용자", en="Account holder"),
}

WithholdingGround = Literal["art35_4_1", "art35_4_2", "art35_4_3"]
WITHHOLDING_GROUNDS: dict[str, Text] = {
    "art35_4_1": Text(
        ko="법률에 따라 열람이 금지되거나 제한되는 경우(개인정보 보호법 제35조제4항제1호)",
        en="Access is prohibited or restricted by law (PIPA Art. 35(4)1)",
    ),
    "art35_4_2": Text(
        ko="다른 사람의 생명·신체를 해할 우려가 있거나 다른 사람의 재산과 그 밖의 이익을 부당하게 "
        "침해할 우려가 있는 경우(개인정보 보호법 제35조제4항제2호)",
        en="Access may harm another person's life or body or unfairly infringe their property "
        "or other interests (PIPA Art. 35(4)2)",
    ),
    "art35_4_3": Text(
        ko="공공기관의 업무 수행에 중대한 지장을 초래하는 경우(개인정보 보호법 제35조제4항제3호)",
        en="Access would seriously disrupt a public institution's duties (PIPA Art. 35(4)3)",
    ),
}

_PERIOD = re.compile(r"^(\d{1,3})([ym])$")


class RetentionRule(BaseModel):
    """How long records are kept and on what legal basis (privacy policy section 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: str | None = Field(
        default=None,
        description="'5y', '3m', '12m'...; null: kept until the purpose is achieved (or consent "
        "withdrawn), then destroyed without delay",
    )
    legal_basis: Text
    description: Text | None = None

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None and not _PERIOD.match(value):
            raise ValueError("period must look like '5y' or '3m'")
        return value

    @property
    def months(self) -> int | None:
        if self.period is None:
            return None
        match = _PERIOD.match(self.period)
        assert match is not None
        number, unit = int(match.group(1)), match.group(2)
        return number * 12 if unit == "y" else number

    def period_label(self, lang: str) -> str:
        months = self.months
        if months is None:
            return "목적 달성 시까지" if lang != "en" else "Until the purpose is achieved"
        if months % 12 == 0:
            years = months // 12
            return f"{years}년" if lang != "en" else f"{years} year{'s' if years > 1 else ''}"
        return f"{months}개월" if lang != "en" else f"{months} month{'s' if months > 1 else ''}"

    def retain_until(self, start: datetime) -> datetime | None:
        """When a record whose clock started at ``start`` must be destroyed (None: no period)."""
        months = self.months
        if months is None:
            return None
        return add_months(start, months)


def add_months(start: datetime, months: int) -> datetime:
    """Calendar months later, clamped to the month's last day (31 Jan + 1 m = 28/29 Feb)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    for day in (start.day, 30, 29, 28):
        try:
            return start.replace(year=year, month=month, day=min(start.day, day))
        except ValueError:
            continue
    raise ValueError("unreachable")  # pragma: no cover


NO_RETENTION_RULE = "until_purpose_achieved"

# Descriptions of the settings' rules (privacy policy section 2); a rule added by
# DSR_RETENTION_RULES without one here has none.
RULE_DESCRIPTIONS: dict[str, Text] = {
    "transactions": Text(
        ko="거래 기록 및 증빙 서류", en="Transaction records and evidentiary documents"
    ),
    "contracts": Text(
        ko="계약 또는 청약철회, 대금 결제 및 재화 등의 공급에 관한 기록",
        en="Records on contracts or cancellation, payment and supply of goods",
    ),
    "complaints": Text(
        ko="소비자 불만 또는 분쟁 처리에 관한 기록",
        en="Records on handling consumer complaints and disputes",
    ),
    "service_calls": Text(ko="서비스 통화 기록", en="Records on service calls"),
    "advertising": Text(ko="표시·광고에 관한 기록", en="Records on display and advertising"),
    "access_logs_3m": Text(
        ko="접속지 추적 자료 등 통신사실확인자료(3개월)",
        en="Access location and other communication confirmation data (3 months)",
    ),
    "access_logs_12m": Text(
        ko="인터넷 로그 기록 등 통신사실확인자료(12개월)",
        en="Internet log records and other communication confirmation data (12 months)",
    ),
}

# Not a law's retention: the data goes as soon as its purpose is achieved (PIPA Art. 21).
UNTIL_PURPOSE_ACHIEVED = RetentionRule(
    period=None,
    legal_basis=Text(
        ko="개인정보 보호법 제21조(목적 달성 시 지체 없이 파기)",
        en="PIPA Art. 21 (destroyed without delay once the purpose is achieved)",
    ),
)


def rules_from_settings(configured: Mapping[str, Any]) -> dict[str, RetentionRule]:
    """The data map's view of the settings' retention rules (``Settings.retention_rules``):
    the one source of truth, plus the built-in ``until_purpose_achieved`` (no period)."""
    rules = {
        name: RetentionRule(
            period=rule.period,
            legal_basis=Text(ko=rule.legal_basis_ko, en=rule.legal_basis_en),
            description=RULE_DESCRIPTIONS.get(name),
        )
        for name, rule in configured.items()
    }
    rules[NO_RETENTION_RULE] = UNTIL_PURPOSE_ACHIEVED
    return rules


def default_rules() -> dict[str, RetentionRule]:
    """The rules of the default settings (DSR_RETENTION_RULES unset)."""
    return rules_from_settings(default_retention_rules())


# --- The file's shape ------------------------------------------------------------------------


def _identifier(value: str) -> str:
    """A table, schema or column name: any characters PostgreSQL accepts in a quoted name."""
    if not value or not value.strip():
        raise ValueError("must not be empty")
    if len(value.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError("is longer than 63 bytes")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("contains control characters")
    return value


def quote_ident(name: str) -> str:
    """Quote a validated identifier for SQL: the only way names reach a statement."""
    return '"' + _identifier(name).replace('"', '""') + '"'


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PhoneFormat = Literal["e164", "kr_dashed", "digits", "intl_digits"]
EmailFormat = Literal["lower", "ci"]
IdentifierKind = Literal["phone", "email"]


class MatchColumn(_Strict):
    """A column that holds a verified identifier, in the format the table stores it in."""

    column: str
    identifier: IdentifierKind
    format: list[str] = Field(
        default_factory=list,
        description="phone: e164 | kr_dashed | digits | intl_digits (one or a list); "
        "email: lower | ci (compare case-insensitively)",
    )

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("format", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


ErasureStrategy = Literal["delete_row", "null", "redact", "hash"]
FieldErasure = Literal["null", "redact", "hash"]


class Withhold(_Strict):
    """An item withheld from access reports under PIPA Art. 35(4), with its ground."""

    ground: WithholdingGround
    explanation: Text | None = None


class FieldSpec(_Strict):
    column: str
    item: str = Field(pattern=NAME_PATTERN)
    category: Category | None = None
    label: Text | None = None
    purposes: list[Purpose] | None = None
    erasure: FieldErasure | None = None
    redact_value: str = "[redacted]"
    provided: bool = Field(
        default=True, description="handed to the record's processors along with the record"
    )
    withhold: Withhold | None = None

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _identifier(value)

    @property
    def effective_category(self) -> str:
        if self.category:
            return self.category
        kind = ITEMS.get(self.item)
        return kind.category if kind else "identity"

    @property
    def item_label(self) -> Text:
        if self.label:
            return self.label
        kind = ITEMS.get(self.item)
        return kind.label if kind else Text(ko=self.item, en=self.item)


class RoleSpec(_Strict):
    label: Text | None = None
    match: list[MatchColumn] = Field(min_length=1)
    fields: list[FieldSpec] = Field(min_length=1)

    def field(self, column: str) -> FieldSpec | None:
        return next((spec for spec in self.fields if spec.column == column), None)


class RetentionSpec(_Strict):
    rule: str = Field(pattern=NAME_PATTERN)
    clock_column: str | None = Field(default=None, description="timestamp the period runs from")

    @field_validator("clock_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)


class ProcessorSpec(_Strict):
    """A column naming the processor (carrier, customs broker...) a record was handed to."""

    column: str
    at_column: str | None = Field(default=None, description="when it was handed over")
    reference_column: str | None = Field(
        default=None, description="the processor's reference for the record (tracking number)"
    )
    items: list[str] | None = Field(
        default=None, description="only these items went to this processor (default: all)"
    )

    @field_validator("column", "at_column", "reference_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)


class ConsentSpec(_Strict):
    """A boolean column recording an optional consent (e.g. marketing opt-in)."""

    column: str
    purpose: Purpose
    at_column: str | None = None

    @field_validator("column", "at_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)


class InFlightSpec(_Strict):
    """A contract still being performed: a record whose ``column`` is null (e.g. not yet
    delivered). Suspending the collection's purposes would make it impossible (PIPA Art. 37(2)4).
    """

    column: str = Field(description="null while the contract is under way (e.g. delivered_at)")

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        return _identifier(value)


class CollectionSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    label: Text
    source: str = Field(pattern=NAME_PATTERN)
    schema_name: str | None = Field(default=None, alias="schema")
    table: str | None = None
    resource: str | None = None
    record_key: str
    purposes: list[Purpose] = Field(min_length=1)
    optional: bool = False
    retention: RetentionSpec
    erasure: ErasureStrategy = "null"
    processors: list[ProcessorSpec] = Field(default_factory=list)
    consent: ConsentSpec | None = None
    restriction_column: str | None = Field(
        default=None, description="a boolean column the operational system honours as 'do not use'"
    )
    in_flight: InFlightSpec | None = None
    roles: dict[str, RoleSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_name", "table", "record_key", "restriction_column")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", value):
            raise ValueError("must be letters, digits, '_', '.', '-' (at most 100)")
        return value

    def role(self, name: str) -> RoleSpec:
        return self.roles[name]

    def field_erasure(self, spec: FieldSpec) -> FieldErasure:
        """The strategy for one field when the whole row is not deleted."""
        if spec.erasure:
            return spec.erasure
        return "null" if self.erasure == "delete_row" else self.erasure

    def field_purposes(self, spec: FieldSpec) -> list[str]:
        return list(spec.purposes or self.purposes)


class PostgresSource(_Strict):
    connector: Literal["postgres"]
    dsn: str | None = Field(default=None, description=f"'{SELF_DSN}': the service's own database")
    dsn_env: str | None = Field(default=None, description="environment variable holding the DSN")
    schema_name: str = Field(default="public", alias="schema")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return _identifier(value)

    def resolve_dsn(self) -> str:
        """The DSN, or SELF_DSN; raises ConfigError if the environment variable is unset."""
        if self.dsn:
            return self.dsn
        value = os.environ.get(self.dsn_env or "")
        if not value:
            raise ConfigError(f"{self.dsn_env} is not set (data map source DSN)")
        return value


class HttpSource(_Strict):
    connector: Literal["http"]
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    token: str | None = Field(default=None, description="service token (dev/test only)")
    token_env: str | None = Field(default=None, description="environment variable with the token")
    page_size: int = Field(default=500, ge=1, le=10_000)
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    def resolve_token(self) -> str:
        if self.token:
            return self.token
        value = os.environ.get(self.token_env or "")
        if not value:
            raise ConfigError(f"{self.token_env} is not set (data map source token)")
        return value


Source = Annotated[PostgresSource | HttpSource, Field(discriminator="connector")]


class ProcessorInfo(_Strict):
    """A processor's display details for reports (the registry holds the rest)."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")
    name: str
    nation: str | None = None
    service: Text | None = None


class DataMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    # Filled from the settings when the map is parsed (never from the file).
    retention_rules: dict[str, RetentionRule] = Field(default_factory=default_rules)
    sources: dict[str, Source] = Field(default_factory=dict)
    processors: list[ProcessorInfo] = Field(default_factory=list)
    collections: list[CollectionSpec] = Field(default_factory=list)

    @property
    def rules(self) -> dict[str, RetentionRule]:
        return self.retention_rules

    def rule(self, name: str) -> RetentionRule:
        return self.rules[name]

    def collection(self, name: str) -> CollectionSpec:
        for spec in self.collections:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def processor(self, code: str) -> ProcessorInfo | None:
        return next((info for info in self.processors if info.code == code), None)

    def collections_of(self, source: str) -> list[CollectionSpec]:
        return [spec for spec in self.collections if spec.source == source]
