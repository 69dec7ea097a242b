"""Validation and normalisation of corrected values, per item: the validator the API runs
(``app/requests/bodies.py: normalise_new_value``), directly and through POST /v1/requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.requests.bodies import CORRECTABLE_ITEMS, normalise_new_value
from app.vocabulary import ITEMS
from tests.support.lifecycle import make_subject, submit


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
    assert normalise_new_value("phone", raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "010-1234", "12345", "010-1234-56789-1", "call me", "+82 00 0000 0000"]
)
def test_bad_phone_numbers(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalise_new_value("phone", raw)
    assert str(caught.value) == "The phone number is not valid."
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
    assert normalise_new_value("email", raw) == expected


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
    with pytest.raises(ValueError, match="e-mail address is not valid"):
        normalise_new_value("email", raw)


@pytest.mark.parametrize("item", ["address", "company_address", "name", "company_name"])
def test_text_items_are_trimmed_and_not_empty(item: str) -> None:
    assert (
        normalise_new_value(item, "  서울특별시  강서구\t공항대로 247 \n")
        == "서울특별시 강서구 공항대로 247"
    )
    for empty in ("", "   ", "\t\n"):
        with pytest.raises(ValueError, match="must not be empty"):
            normalise_new_value(item, empty)
    with pytest.raises(ValueError, match="control characters"):
        normalise_new_value(item, "홍길동\x00")
    with pytest.raises(ValueError, match="at most"):
        normalise_new_value(item, "가" * 301)


def test_korean_names_are_kept_in_nfc() -> None:
    decomposed = "\u1112\u1169\u11bc\u1100\u1175\u11af\u1103\u1169\u11bc"  # 홍길동 as jamo
    assert normalise_new_value("name", decomposed) == "홍길동"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("P123456789012", "P123456789012"),
        (" p123456789012 ", "P123456789012"),
        # As people copy it from the customs service's page: separators are dropped.
        ("P-1234-5678-9012", "P123456789012"),
        ("P 1234 5678 9012", "P123456789012"),
    ],
)
def test_customs_code(raw: str, expected: str) -> None:
    assert normalise_new_value("customs_code", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "P12345678901",  # 11 digits
        "P1234567890123",  # 13 digits
        "Q123456789012",
        "123456789012",
        "P12345678901A",
        "P_123456789012",
        "P１２３４５６７８９０１２",  # full-width digits
    ],
)
def test_bad_customs_codes(raw: str) -> None:
    with pytest.raises(ValueError, match="P followed by 12 digits"):
        normalise_new_value("customs_code", raw)


def test_a_name_needs_letters_and_an_address_five_characters() -> None:
    with pytest.raises(ValueError, match="must contain letters"):
        normalise_new_value("name", "12345")
    with pytest.raises(ValueError, match="must contain letters"):
        normalise_new_value("company_name", "2024")
    assert normalise_new_value("name", "Kim 2") == "Kim 2"
    with pytest.raises(ValueError, match="at least 5"):
        normalise_new_value("address", "서울")
    assert normalise_new_value("company_address", "서울 중구") == "서울 중구"
    with pytest.raises(ValueError, match="at most 100"):
        normalise_new_value("name", "가" * 101)
    with pytest.raises(ValueError, match="at most 200"):
        normalise_new_value("company_name", "가" * 201)


def test_email_length_is_limited() -> None:
    local = "a" * 64
    long_address = f"{local}@{'b' * 63}.{'c' * 63}.{'d' * 63}.kr"  # 263 characters
    with pytest.raises(ValueError, match="e-mail address is not valid"):
        normalise_new_value("email", long_address)


@pytest.mark.parametrize("item", ["shoe_size", "", "Phone", "ssn"])
def test_unknown_item(item: str) -> None:
    with pytest.raises(ValueError, match="Unknown item"):
        normalise_new_value(item, "x")


@pytest.mark.parametrize(
    "item", ["device_serial", "ip_address", "access_time", "service_use", "inquiry"]
)
def test_records_of_fact_cannot_be_corrected(item: str) -> None:
    with pytest.raises(ValueError, match="cannot be corrected"):
        normalise_new_value(item, "SN-12345")


def test_correctable_items_are_the_vocabularys() -> None:
    assert set(CORRECTABLE_ITEMS) == {code for code, item in ITEMS.items() if item.correctable}
    assert {"name", "phone", "email", "address", "customs_code"} <= set(CORRECTABLE_ITEMS)
    assert "device_serial" not in CORRECTABLE_ITEMS


# --- Through the API (POST /v1/requests) ------------------------------------------------------


async def _correct(app: FastAPI, client: httpx.AsyncClient, *entries: dict[str, Any]) -> Any:
    subject = await make_subject(app)
    return await submit(client, subject, {"type": "correction", "corrections": list(entries)})


@pytest.mark.parametrize(
    ("entry", "pointer", "message"),
    [
        ({"item": "device_serial", "new_value": "SN-12345"}, "/corrections/0/new_value", "cannot"),
        ({"item": "name", "new_value": "12345"}, "/corrections/0/new_value", "letters"),
        ({"item": "shoe_size", "new_value": "270"}, "/corrections/0/item", "Input should be"),
        ({"item": "phone", "new_value": "+82 00 0000 0000"}, "/corrections/0/new_value", "phone"),
    ],
)
async def test_the_api_refuses_what_the_validator_refuses(
    app: FastAPI, client: httpx.AsyncClient, entry: dict[str, Any], pointer: str, message: str
) -> None:
    response = await _correct(app, client, {"item": "address", "new_value": "서울 강서구"}, entry)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation-failed"
    pointer = pointer.replace("/0/", "/1/")
    errors = [error for error in problem["errors"] if error["pointer"] == pointer]
    assert errors and message in errors[0]["message"], problem["errors"]
    assert entry["new_value"] not in response.text


async def test_the_api_stores_what_the_validator_normalises(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    decomposed = "\u1112\u1169\u11bc\u1100\u1175\u11af\u1103\u1169\u11bc"  # 홍길동 as jamo
    raw = [
        ("customs_code", "P-1234-5678-9012"),
        ("name", decomposed),
        ("address", "  서울특별시  강서구\t공항대로 247 \n"),
    ]
    subject = await make_subject(app)
    created = await submit(
        client,
        subject,
        {
            "type": "correction",
            "corrections": [{"item": item, "new_value": value} for item, value in raw],
        },
    )
    assert created.status_code == 201, created.text
    detail = await client.get(f"/v1/requests/{created.json()['id']}", headers=subject.headers)
    stored = [entry["new_value"] for entry in detail.json()["body"]["corrections"]]
    assert stored == [normalise_new_value(item, value) for item, value in raw]
    assert stored == ["P123456789012", "홍길동", "서울특별시 강서구 공항대로 247"]
