"""The identifiers a data map looks a subject up by."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers

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
