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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.config import ConfigError, default_retention_rules
from app.retention.rules import RetentionRule, datamap_rules
from app.vocabulary import ITEMS, CategoryCode, ItemCode, PurposeCode, Text, WithholdingGround

logger = logging.getLogger("dsr.datamap")

SELF_DSN = "self"  # a postgres source whose DSN is this value reads the service's own database
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_MAX_IDENTIFIER_BYTES = 63


def default_rules() -> dict[str, RetentionRule]:
    """The rules a map may name under the default settings (DSR_RETENTION_RULES unset)."""
    return datamap_rules(default_retention_rules())


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
    item: ItemCode
    category: CategoryCode | None = Field(
        default=None, description="optional; must be the item's category in the vocabulary"
    )
    label: Text | None = Field(default=None, description="default: the vocabulary's label")
    purposes: list[PurposeCode] | None = None
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
        """The item's category in the vocabulary (the one deletion by category uses too)."""
        return ITEMS[self.item].category

    @property
    def item_label(self) -> Text:
        return self.label or ITEMS[self.item].label


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
    items: list[ItemCode] | None = Field(
        default=None, description="only these items went to this processor (default: all)"
    )

    @field_validator("column", "at_column", "reference_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else _identifier(value)


class ConsentSpec(_Strict):
    """A boolean column recording an optional consent (e.g. marketing opt-in)."""

    column: str
    purpose: PurposeCode
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
    purposes: list[PurposeCode] = Field(min_length=1)
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
