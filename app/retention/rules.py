"""Retention rules: which law keeps which records, and for how long (PIPA Art. 21).

A record another law requires to keep is separated on deletion: copied here, sealed with a
random data key of its own (wrapped by a master key derived from DSR_FIELD_ENCRYPTION_KEY),
until ``destroy_after``. Then the data key is destroyed first and the row after it, so the
payload cannot be reproduced (policy section 2(3)) even from a copy of the row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from app.errors import DomainError, Gone
from app.vocabulary import Text

if TYPE_CHECKING:
    from app.config import RetentionSetting, Settings

KEK_VERSION = 1
PURGE_ACTION = "retention.purged"
PURGE_JOB_NAME = "retention.purge"
_REASON = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class UnknownRetentionRule(DomainError):
    status = 500
    code = "unknown-retention-rule"
    title = "A retention rule named by the data map is not configured"


class RetainedRecordDestroyed(Gone):
    code = "retained-record-destroyed"
    title = "The retained record was destroyed"


# --- Rules -------------------------------------------------------------------------------------

# A period is a whole number of years or months; "0y" would keep nothing and is refused.
_PERIOD = re.compile(r"^([1-9][0-9]{0,2})([ym])$")


def parse_period(value: str, *, setting: str = "DSR_RETENTION_RULES") -> int:
    """The months of a period such as '5y', '3m' or '12m'; ValueError naming ``setting``."""
    match = _PERIOD.match(value) if isinstance(value, str) else None
    if match is None:
        if isinstance(value, str) and re.fullmatch(r"0+[ym]", value):
            raise ValueError(
                f"{setting}: period {value!r} is zero: a zero period keeps nothing, so it means "
                "nothing; use until_purpose_achieved (no rule) or a period of at least 1m"
            )
        raise ValueError(
            f"{setting}: period {value!r} must be 1 to 999 years or months, such as '5y' or '3m'"
        )
    number, unit = int(match.group(1)), match.group(2)
    return number * 12 if unit == "y" else number


def add_months(start: datetime, months: int) -> datetime:
    """Calendar months later, clamped to the month's end (31 Aug + 6 m = 28/29 Feb)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = start.day
    while True:
        try:
            return start.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1


class RetentionRule(BaseModel):
    """A named retention rule: how long records are kept and under which law (policy section 2).

    ``period`` None is the built-in ``until_purpose_achieved``: no law keeps the record.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    period: str | None
    legal_basis: Text
    description: Text | None = None

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_period(value, setting=f"retention rule {info.data.get('rule')}")
        return value

    @property
    def months(self) -> int | None:
        return None if self.period is None else parse_period(self.period)

    @property
    def legal_basis_ko(self) -> str:
        return self.legal_basis.ko

    @property
    def legal_basis_en(self) -> str:
        return self.legal_basis.en

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
        return None if months is None else add_months(start, months)

    def destroy_after(self, clock_start: datetime) -> datetime:
        """When a record whose retention clock started at ``clock_start`` must be destroyed."""
        until = self.retain_until(clock_start)
        if until is None:
            raise ValueError(f"retention rule {self.rule} has no period")
        return until

    def runs_at(self, clock_start: datetime, now: datetime) -> bool:
        """True while the law still requires keeping the record."""
        until = self.retain_until(clock_start)
        return until is not None and until > now


NO_RETENTION_RULE = "until_purpose_achieved"

# Not a law's retention: the data goes as soon as its purpose is achieved (PIPA Art. 21).
UNTIL_PURPOSE_ACHIEVED = RetentionRule(
    rule=NO_RETENTION_RULE,
    period=None,
    legal_basis=Text(
        ko="개인정보 보호법 제21조(목적 달성 시 지체 없이 파기)",
        en="PIPA Art. 21 (destroyed without delay once the purpose is achieved)",
    ),
)

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


def rules_from_settings(configured: Mapping[str, RetentionSetting]) -> dict[str, RetentionRule]:
    """The settings' rules (``Settings.retention_rules``) as rules, by name."""
    return {
        name: RetentionRule(
            rule=name,
            period=setting.period,
            legal_basis=Text(ko=setting.legal_basis_ko, en=setting.legal_basis_en),
            description=RULE_DESCRIPTIONS.get(name),
        )
        for name, setting in configured.items()
    }


def datamap_rules(configured: Mapping[str, RetentionSetting]) -> dict[str, RetentionRule]:
    """The rules a data map may name: the settings' plus the built-in until_purpose_achieved."""
    return {**rules_from_settings(configured), NO_RETENTION_RULE: UNTIL_PURPOSE_ACHIEVED}


def retention_rules(settings: Settings) -> dict[str, RetentionRule]:
    """Every configured rule by name (the privacy policy's section 2 table, plus overrides)."""
    return rules_from_settings(settings.retention_rules)


def retention_rule(settings: Settings, name: str) -> RetentionRule:
    """The period and legal basis of one rule; UnknownRetentionRule if it is not configured."""
    setting = settings.retention_rules.get(name)
    if setting is None:
        raise UnknownRetentionRule(f"Retention rule {name!r} is not configured.")
    return rules_from_settings({name: setting})[name]
