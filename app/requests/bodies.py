"""What each request type carries: the correctable values checked and normalised, the scope.

Messages raised here never contain the value checked (it is personal data).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from app.errors import DomainError
from app.subjects.identifiers import normalise_email, normalise_phone
from app.vocabulary import CATEGORIES, ITEMS, PURPOSES, items_in

_CUSTOMS_CODE = re.compile(r"^P\d{12}$")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def _no_control(value: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in value):
        raise ValueError("must not contain control characters")
    return value


def _text(value: str, *, low: int, high: int, letters: bool = False) -> str:
    text = " ".join(_no_control(value).split())
    if not low <= len(text) <= high:
        raise ValueError(f"must be {low} to {high} characters")
    if letters and not _LETTER.search(text):
        raise ValueError("must contain letters")
    return text


def normalise_new_value(item: str, raw: str) -> str:
    """The corrected value as it will be stored; ValueError (without the value) if it is not one."""
    if item not in ITEMS:
        raise ValueError("unknown item")
    if not ITEMS[item].correctable:
        raise ValueError("this item is recorded by the system and cannot be corrected")
    value = raw.strip()
    try:
        if item == "phone":
            return normalise_phone(value)
        if item == "email":
            return normalise_email(value)
    except DomainError:
        what = "phone number" if item == "phone" else "e-mail address"
        raise ValueError(f"not a valid {what}") from None
    if item == "customs_code":
        code = value.replace("-", "").replace(" ", "").upper()
        if not _CUSTOMS_CODE.match(code):
            raise ValueError("a personal customs code is P followed by 12 digits")
        return code
    if item == "name":
        return _text(value, low=1, high=100, letters=True)
    if item == "company_name":
        return _text(value, low=1, high=200, letters=True)
    return _text(value, low=5, high=300)  # address, company_address


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
    "ITEMS",
    "PURPOSES",
    "check_codes",
    "normalise_new_value",
    "refusable_parts",
    "scope_of",
]
