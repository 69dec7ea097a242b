"""Retention rules: which law keeps which records, and for how long (PIPA Art. 21).

A record another law requires to keep is separated on deletion: copied here, sealed with a
random data key of its own (wrapped by a master key derived from DSR_FIELD_ENCRYPTION_KEY),
until ``destroy_after``. Then the data key is destroyed first and the row after it, so the
payload cannot be reproduced (policy section 2(3)) even from a copy of the row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from app.config import Settings
from app.errors import DomainError, Gone

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


@dataclass(frozen=True)
class RetentionTerm:
    """A named retention rule: how long, and under which law."""

    rule: str
    period: str  # "5y", "3m", "12m"
    months: int
    legal_basis_ko: str
    legal_basis_en: str

    def destroy_after(self, clock_start: datetime) -> datetime:
        """When a record whose retention clock started at ``clock_start`` must be destroyed."""
        return add_months(clock_start, self.months)

    def runs_at(self, clock_start: datetime, now: datetime) -> bool:
        """True while the law still requires keeping the record."""
        return self.destroy_after(clock_start) > now

    def legal_basis(self, lang: str = "ko") -> str:
        return self.legal_basis_en if lang == "en" else self.legal_basis_ko


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


def _term(name: str, period: str, ko: str, en: str) -> RetentionTerm:
    number, unit = int(period[:-1]), period[-1]
    return RetentionTerm(
        rule=name,
        period=period,
        months=number * 12 if unit == "y" else number,
        legal_basis_ko=ko,
        legal_basis_en=en,
    )


def retention_rules(settings: Settings) -> dict[str, RetentionTerm]:
    """Every configured rule by name (the privacy policy's section 2 table, plus overrides)."""
    return {
        name: _term(name, rule.period, rule.legal_basis_ko, rule.legal_basis_en)
        for name, rule in settings.retention_rules.items()
    }


def retention_rule(settings: Settings, name: str) -> RetentionTerm:
    """The period and legal basis of one rule; UnknownRetentionRule if it is not configured."""
    rule = settings.retention_rules.get(name)
    if rule is None:
        raise UnknownRetentionRule(f"Retention rule {name!r} is not configured.")
    return _term(name, rule.period, rule.legal_basis_ko, rule.legal_basis_en)
