"""Phone numbers: the 010 shortcut answers exactly what phonenumbers answers."""

from __future__ import annotations

import phonenumbers
import pytest

from app.errors import InvalidInput
from app.subjects.identifiers import normalise_phone


def by_the_library(raw: str) -> str | None:
    """What phonenumbers alone makes of ``raw`` (None: not a valid number)."""
    try:
        number = phonenumbers.parse(raw, "KR")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def ours(raw: str) -> str | None:
    try:
        return normalise_phone(raw)
    except InvalidInput:
        return None


@pytest.mark.parametrize("separator", ["-", " ", ""])
def test_every_010_middle_group_normalises_as_phonenumbers_does(separator: str) -> None:
    # All 10,000 middle groups: a numbering-plan change in a phonenumbers release shows here.
    differing = [
        raw
        for middle in range(10_000)
        for raw in [f"010{separator}{middle:04d}{separator}5678"]
        if ours(raw) != by_the_library(raw)
    ]
    assert differing == []
    assert ours(f"010{separator}1234{separator}5678") == "+821012345678"
    assert ours(f"010{separator}5970{separator}5678") is None  # not assigned: refused


@pytest.mark.parametrize(
    "raw",
    [
        "０１０-１２３４-５６７８",  # full-width digits
        "٠١٠١٢٣٤٥٦٧٨",  # Arabic-Indic digits
        "010-1234 5678",  # mixed separators
        "010.1234.5678",
        "(010) 1234-5678",
        "+82 10 1234 5678",
        "+82-10-1234-5678",
        "010-1234-567",
        "010-1234-56789",
        "011-234-5678",
        "02-312-3456",
        "0101234567８",
    ],
)
def test_other_forms_go_to_the_library(raw: str) -> None:
    assert ours(raw) == by_the_library(raw)
