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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.config import ConfigError, Settings, default_retention_rules

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


# --- Loading and validation ------------------------------------------------------------------


class DataMapError(ConfigError):
    """The data map is not usable; each error names its path in the file."""

    def __init__(self, origin: str, errors: list[tuple[str, str]]) -> None:
        self.origin = origin
        self.errors = errors
        lines = "\n".join(f"  {path or '(top)'}: {message}" for path, message in errors)
        super().__init__(f"data map {origin} is invalid:\n{lines}")

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.errors]


def format_path(loc: Iterable[Any]) -> str:
    """('collections', 2, 'roles', 'sender') → 'collections[2].roles.sender'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = list(error["loc"])
        # The tagged union of sources puts the tag in the location: sources.x.http.base_url.
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in ("postgres", "http"):
            del loc[2]
        errors.append((format_path(loc), str(error["msg"])))
    return errors


def parse_datamap(
    data: Any, *, origin: str = "<data>", rules: Mapping[str, Any] | None = None
) -> DataMap:
    """Validate a parsed YAML document against the settings' retention ``rules``
    (``Settings.retention_rules``; default: the built-in policy table); raise DataMapError
    naming every bad path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DataMapError(origin, [("", "the data map must be a mapping")])
    if "retention_rules" in data:
        raise DataMapError(
            origin,
            [("retention_rules", "retention rules are settings (DSR_RETENTION_RULES), not map")],
        )
    data = {
        **data,
        "retention_rules": rules_from_settings(
            default_retention_rules() if rules is None else rules
        ),
    }
    # A discriminated union on `connector` gives clean per-source messages.
    sources = data.get("sources") or {}
    problems: list[tuple[str, str]] = []
    if isinstance(sources, dict):
        for name, source in sources.items():
            if not re.match(NAME_PATTERN, str(name)):
                problems.append((f"sources.{name}", "source names are lower_snake_case"))
            if not isinstance(source, dict) or source.get("connector") not in ("postgres", "http"):
                problems.append((f"sources.{name}.connector", "must be 'postgres' or 'http'"))
    if problems:
        raise DataMapError(origin, problems)
    try:
        datamap = DataMap.model_validate(data)
    except ValidationError as exc:
        raise DataMapError(origin, _pydantic_errors(exc)) from None
    problems = list(_check_references(datamap))
    if problems:
        raise DataMapError(origin, problems)
    return datamap


def _check_references(datamap: DataMap) -> Iterable[tuple[str, str]]:
    """Cross-references the schema alone cannot check."""
    rules = datamap.rules
    for name, source in datamap.sources.items():
        if isinstance(source, PostgresSource) and bool(source.dsn) == bool(source.dsn_env):
            yield f"sources.{name}", "give exactly one of dsn or dsn_env"
        if isinstance(source, HttpSource) and bool(source.token) == bool(source.token_env):
            yield f"sources.{name}", "give exactly one of token or token_env"
    codes = [info.code for info in datamap.processors]
    for index, code in enumerate(codes):
        if codes.index(code) != index:
            yield f"processors[{index}].code", "duplicate processor code"
    seen: set[str] = set()
    for index, spec in enumerate(datamap.collections):
        at = f"collections[{index}]"
        if spec.name in seen:
            yield f"{at}.name", "duplicate collection name"
        seen.add(spec.name)
        found = datamap.sources.get(spec.source)
        if found is None:
            yield f"{at}.source", "no such source in sources"
        elif isinstance(found, PostgresSource) and not spec.table:
            yield f"{at}.table", "a postgres collection needs a table"
        elif isinstance(found, HttpSource) and not spec.resource:
            yield f"{at}.resource", "an http collection needs a resource"
        if spec.retention.rule not in rules:
            yield (
                f"{at}.retention.rule",
                f"no such retention rule (configured: {', '.join(sorted(rules))})",
            )
        elif rules[spec.retention.rule].months is not None and not spec.retention.clock_column:
            yield f"{at}.retention.clock_column", "a rule with a period needs a clock column"
        if spec.erasure == "delete_row" and len(spec.roles) > 1:
            yield (
                f"{at}.erasure",
                "delete_row would erase the other roles' data: use null, redact or hash",
            )
        if spec.consent and spec.consent.purpose not in spec.purposes:
            yield f"{at}.consent.purpose", "not one of the collection's purposes"
        role_items = {item for role in spec.roles.values() for item in _items(role)}
        for p_index, processor in enumerate(spec.processors):
            for i_index, item in enumerate(processor.items or []):
                if item not in role_items:
                    yield f"{at}.processors[{p_index}].items[{i_index}]", "no field has this item"
        for role_name, role in spec.roles.items():
            yield from _check_role(f"{at}.roles.{role_name}", role_name, role, spec)


def _items(role: RoleSpec) -> list[str]:
    return [spec.item for spec in role.fields]


def _check_role(
    at: str, name: str, role: RoleSpec, spec: CollectionSpec
) -> Iterable[tuple[str, str]]:
    if not re.match(NAME_PATTERN, name):
        yield at, "role names are lower_snake_case"
    for index, match in enumerate(role.match):
        allowed: tuple[str, ...] = ("e164", "kr_dashed", "digits", "intl_digits")
        if match.identifier == "email":
            allowed = ("lower", "ci")
        formats = match.format or [allowed[0]]
        for f_index, value in enumerate(formats):
            if value not in allowed:
                yield (
                    f"{at}.match[{index}].format[{f_index}]",
                    f"not a {match.identifier} format (one of {', '.join(allowed)})",
                )
    columns: set[str] = set()
    for index, field in enumerate(role.fields):
        if field.column in columns:
            yield f"{at}.fields[{index}].column", "the same column twice in one role"
        columns.add(field.column)
        if field.item not in ITEMS and field.label is None:
            yield f"{at}.fields[{index}].item", "unknown item: give it a label {ko, en}"
        if field.column == spec.record_key:
            yield f"{at}.fields[{index}].column", "the record key cannot be a personal field"


def load_datamap(path: Path, *, rules: Mapping[str, Any] | None = None) -> DataMap:
    """Read and validate a data map file (``rules``: ``Settings.retention_rules``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataMapError(str(path), [("", f"cannot be read ({type(exc).__name__})")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise DataMapError(str(path), [(where, "is not valid YAML")]) from None
    return parse_datamap(data, origin=str(path), rules=rules)


def datamap_path(settings: Settings) -> Path:
    """DSR_DATAMAP_PATH, else the map `dsr demo` writes into the data dir."""
    return settings.datamap_path or settings.data_dir / "datamap.yaml"


def load_configured_datamap(settings: Settings) -> DataMap:
    """The map for this process: a missing map is empty in dev/test (with a warning); in prod a
    missing or invalid map stops start-up, and an invalid map always does."""
    path = datamap_path(settings)
    if not path.exists():
        if settings.env == "prod":
            raise ConfigError(f"data map {path} does not exist (DSR_DATAMAP_PATH)")
        logger.warning(
            "no data map: access reports will find nothing until one is configured",
            extra={"event": "datamap.missing"},
        )
        return DataMap()
    datamap = load_datamap(path, rules=settings.retention_rules)
    if settings.env == "prod":
        for name, source in datamap.sources.items():
            if isinstance(source, HttpSource) and source.token:
                raise DataMapError(
                    str(path), [(f"sources.{name}.token", "use token_env in production")]
                )
    logger.info(
        "data map loaded",
        extra={"event": "datamap.loaded", "count": len(datamap.collections)},
    )
    return datamap


# --- Identifiers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectIdentifiers:
    """A data subject's verified identifiers: E.164 phone, lower-case e-mail."""

    phone: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if self.phone is None and self.email is None:
            raise ValueError("at least one identifier is needed")
        if self.phone is not None and not re.fullmatch(r"\+[1-9]\d{6,14}", self.phone):
            raise ValueError("phone must be E.164")
        if self.email is not None and (self.email != self.email.lower() or "@" not in self.email):
            raise ValueError("email must be lower-case")

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> SubjectIdentifiers:
        return cls(phone=data.get("phone") or None, email=data.get("email") or None)

    def as_payload(self) -> dict[str, str]:
        return {k: v for k, v in (("phone", self.phone), ("email", self.email)) if v}

    def get(self, kind: str) -> str | None:
        return self.phone if kind == "phone" else self.email if kind == "email" else None


def identifier_candidates(value: str, kind: str, formats: list[str]) -> list[str]:
    """The verified identifier written the ways the column stores it, for binding."""
    if kind == "email":
        return [value.lower()]
    number = phonenumbers.parse(value)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    out: list[str] = []
    for name in formats or ["e164"]:
        if name == "e164":
            candidate = e164
        elif name == "intl_digits":
            candidate = e164.lstrip("+")
        elif name == "digits":
            candidate = re.sub(r"\D", "", national)
        elif name == "kr_dashed":
            if phonenumbers.region_code_for_number(number) != "KR":
                continue
            candidate = national
        else:  # pragma: no cover - validated in the map
            continue
        if candidate not in out:
            out.append(candidate)
    return out
