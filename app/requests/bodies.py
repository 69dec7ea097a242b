"""What each request type carries: the corrected values checked and normalised, the scope.

Messages raised here never contain the value checked (it is personal data).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

from app.errors import DomainError
from app.subjects.identifiers import normalise_email, normalise_phone
from app.vocabulary import CATEGORIES, ITEMS, PURPOSES, items_in

# The one validator of corrected values: the API runs it on every ``corrections[].new_value``.
_CUSTOMS_CODE = re.compile(r"^P[0-9]{12}$")  # ASCII digits only (\d would take full-width)
_CUSTOMS_SEPARATORS = str.maketrans("", "", "- ")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_EMAIL_MAX = 254  # RFC 5321: the longest address a mail path carries


def _text(value: str, *, low: int, high: int, letters: bool = False) -> str:
    """NFC (a decomposed 홍길동 is stored as the composed one), runs of white space collapsed."""
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise ValueError("The value must not be empty.")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise ValueError("The value contains control characters.")
    if len(text) > high:
        raise ValueError(f"The value must be at most {high} characters.")
    if len(text) < low:
        raise ValueError(f"The value must be at least {low} characters.")
    if letters and not _LETTER.search(text):
        raise ValueError("The value must contain letters.")
    return text


def _phone(value: str) -> str:
    try:
        return normalise_phone(value.strip())
    except DomainError:
        raise ValueError("The phone number is not valid.") from None


def _email(value: str) -> str:
    if len(value.strip()) > _EMAIL_MAX:
        raise ValueError("The e-mail address is not valid.")
    try:
        return normalise_email(value)
    except DomainError:
        raise ValueError("The e-mail address is not valid.") from None


def _customs_code(value: str) -> str:
    """개인통관고유부호: P and 12 digits; spaces and dashes as people copy it are dropped."""
    code = value.strip().translate(_CUSTOMS_SEPARATORS).upper()
    if not _CUSTOMS_CODE.match(code):
        raise ValueError("A personal customs clearance code is P followed by 12 digits.")
    return code


_RULES: dict[str, Callable[[str], str]] = {
    "name": lambda value: _text(value, low=1, high=100, letters=True),
    "company_name": lambda value: _text(value, low=1, high=200, letters=True),
    "address": lambda value: _text(value, low=5, high=300),
    "company_address": lambda value: _text(value, low=5, high=300),
    "phone": _phone,
    "email": _email,
    "customs_code": _customs_code,
}
# Records of fact (device serials, access times, IP addresses, logs, what an inquiry said) are
# not errors to correct: the vocabulary marks them, and only the others have a rule here.
CORRECTABLE_ITEMS: tuple[str, ...] = tuple(code for code, item in ITEMS.items() if item.correctable)
assert set(_RULES) == set(CORRECTABLE_ITEMS)


def normalise_new_value(item: str, raw: str) -> str:
    """The corrected value as it will be stored; ValueError (without the value) if it is not one."""
    if item not in ITEMS:
        raise ValueError("Unknown item.")
    rule = _RULES.get(item)
    if rule is None:
        raise ValueError("This item is recorded by the system and cannot be corrected.")
    return rule(raw)


def check_codes(values: list[str], *, allowed: dict[str, Any], what: str) -> list[str]:
    """Deduplicated codes in the given order; ValueError naming the position of an unknown one."""
    seen: list[str] = []
    for position, value in enumerate(values):
        if value not in allowed:
            raise ValueError(f"{what} at position {position} is not one of {sorted(allowed)}")
        if value not in seen:
            seen.append(value)
    return seen


def scope_of(request_type: str, body: dict[str, Any]) -> dict[str, list[str]]:
    """The request's reach without personal data: item, category and purpose codes."""
    if request_type == "correction":
        return {"items": sorted({entry["item"] for entry in body.get("corrections", [])})}
    if request_type == "deletion":
        return {"items": body.get("items") or [], "categories": body.get("categories") or []}
    if request_type in ("suspension", "consent_withdrawal"):
        return {"purposes": body.get("purposes") or []}
    return {}


def refusable_parts(request_type: str, scope: dict[str, list[str]]) -> set[str]:
    """The codes a partial refusal may name for a request with this scope."""
    if request_type == "correction":
        return set(scope.get("items", []))
    if request_type in ("suspension", "consent_withdrawal"):
        return set(scope.get("purposes", []))
    categories = set(scope.get("categories", []))
    in_categories = items_in(categories)
    named = set(scope.get("items", [])) | categories | in_categories
    if request_type == "deletion" and named:
        return named
    return set(ITEMS) | set(CATEGORIES)


__all__ = [
    "CATEGORIES",
    "CORRECTABLE_ITEMS",
    "ITEMS",
    "PURPOSES",
    "check_codes",
    "normalise_new_value",
    "refusable_parts",
    "scope_of",
]
