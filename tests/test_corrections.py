"""Validation and normalisation of corrected values, per item."""

from __future__ import annotations

import pytest

from app.requests.corrections import CORRECTABLE_ITEMS, InvalidCorrection, validate_correction
from app.vocabulary import ITEMS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("010-1234-5678", "+821012345678"),
        ("01012345678", "+821012345678"),
        ("010 1234 5678", "+821012345678"),
        ("+82 10-1234-5678", "+821012345678"),
        ("+821012345678", "+821012345678"),
        ("  (010) 1234-5678 ", "+821012345678"),
        ("011-234-5678", "+82112345678"),
        ("02-2620-1100", "+82226201100"),
        ("031-123-4567", "+82311234567"),
        ("+81 90-1234-5678", "+819012345678"),
    ],
)
def test_phone_numbers_as_koreans_write_them(raw: str, expected: str) -> None:
    assert validate_correction("phone", raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "010-1234", "12345", "010-1234-56789-1", "call me", "+82 00 0000 0000"]
)
def test_bad_phone_numbers(raw: str) -> None:
    with pytest.raises(InvalidCorrection) as caught:
        validate_correction("phone", raw, pointer="/corrections/0/new_value")
    assert caught.value.status == 422
    assert caught.value.extra["errors"] == [
        {"pointer": "/corrections/0/new_value", "message": "The phone number is not valid."}
    ]
    if raw.strip():
        assert raw not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("kim@example.com", "kim@example.com"),
        (" Kim.MinJi@Example.CO.KR ", "kim.minji@example.co.kr"),
        ("user+tag@sub.example.org", "user+tag@sub.example.org"),
    ],
)
def test_email(raw: str, expected: str) -> None:
    assert validate_correction("email", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "kim",
        "kim@",
        "@example.com",
        "kim@@example.com",
        "kim @example.com",
        "a" * 250 + "@x.kr",
    ],
)
def test_bad_email(raw: str) -> None:
    with pytest.raises(InvalidCorrection, match="e-mail address is not valid"):
        validate_correction("email", raw)


@pytest.mark.parametrize("item", ["address", "company_address", "name", "company_name"])
def test_text_items_are_trimmed_and_not_empty(item: str) -> None:
    assert (
        validate_correction(item, "  서울특별시  강서구\t공항대로 247 \n")
        == "서울특별시 강서구 공항대로 247"
    )
    for empty in ("", "   ", "\t\n"):
        with pytest.raises(InvalidCorrection, match="must not be empty"):
            validate_correction(item, empty)
    with pytest.raises(InvalidCorrection, match="control characters"):
        validate_correction(item, "홍길동\x00")
    with pytest.raises(InvalidCorrection, match="at most"):
        validate_correction(item, "가" * 301)


def test_korean_names_are_kept_in_nfc() -> None:
    decomposed = "\u1112\u1169\u11bc\u1100\u1175\u11af\u1103\u1169\u11bc"  # 홍길동 as jamo
    assert validate_correction("name", decomposed) == "홍길동"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("P123456789012", "P123456789012"), (" p123456789012 ", "P123456789012")],
)
def test_customs_code(raw: str, expected: str) -> None:
    assert validate_correction("customs_code", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "P12345678901",  # 11 digits
        "P1234567890123",  # 13 digits
        "Q123456789012",
        "123456789012",
        "P12345678901A",
        "P-123456789012",
        "P１２３４５６７８９０１２",  # full-width digits
    ],
)
def test_bad_customs_codes(raw: str) -> None:
    with pytest.raises(InvalidCorrection, match="P followed by 12 digits"):
        validate_correction("customs_code", raw)


def test_device_serial() -> None:
    assert validate_correction("device_serial", " R58M12ABCDE ") == "R58M12ABCDE"
    with pytest.raises(InvalidCorrection):
        validate_correction("device_serial", "serial with spaces")


@pytest.mark.parametrize("item", ["shoe_size", "", "Phone", "ssn"])
def test_unknown_item_is_422_pointing_at_the_item(item: str) -> None:
    with pytest.raises(InvalidCorrection) as caught:
        validate_correction(item, "x", pointer="/corrections/2/new_value")
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["pointer"] == "/corrections/2/item"


@pytest.mark.parametrize("item", ["ip_address", "access_time", "service_use", "inquiry"])
def test_records_of_fact_cannot_be_corrected(item: str) -> None:
    with pytest.raises(InvalidCorrection, match="cannot be corrected"):
        validate_correction(item, "x")


def test_correctable_items_are_in_the_vocabulary() -> None:
    assert set(CORRECTABLE_ITEMS) <= set(ITEMS)
    assert {"name", "phone", "email", "address", "customs_code"} <= set(CORRECTABLE_ITEMS)
