"""Validate and normalise the new value of a correction, per item (PIPA Art. 36).

Pure functions: no database, no I/O. Errors are ``InvalidInput`` (422) naming the field by JSON
pointer and never echoing the value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import phonenumbers

from app.errors import InvalidInput
from app.subjects.identifiers import normalise_email
from app.vocabulary import ITEMS

_CUSTOMS_CODE = re.compile(r"^P[0-9]{12}$")
_DEVICE_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SPACES = re.compile(r"\s+")


class InvalidCorrection(InvalidInput):
    code = "invalid-correction"
    title = "The corrected value is not valid"


def _fail(message: str, pointer: str | None) -> InvalidCorrection:
    errors = [{"pointer": pointer or "/new_value", "message": message}]
    return InvalidCorrection(message, errors=errors)


def _text(max_length: int) -> Callable[[str, str | None], str]:
    def check(value: str, pointer: str | None) -> str:
        cleaned = _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip()
        if not cleaned:
            raise _fail("The value must not be empty.", pointer)
        if any(unicodedata.category(char) in ("Cc", "Cf") for char in cleaned):
            raise _fail("The value contains control characters.", pointer)
        if len(cleaned) > max_length:
            raise _fail(f"The value must be at most {max_length} characters.", pointer)
        return cleaned

    return check


def _phone(value: str, pointer: str | None) -> str:
    try:
        number = phonenumbers.parse(value.strip(), "KR")
    except phonenumbers.NumberParseException:
        raise _fail("The phone number is not valid.", pointer) from None
    if not phonenumbers.is_valid_number(number):
        raise _fail("The phone number is not valid.", pointer)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value: str, pointer: str | None) -> str:
    if len(value) > 254:
        raise _fail("The e-mail address is not valid.", pointer)
    try:
        return normalise_email(value)
    except InvalidInput:
        raise _fail("The e-mail address is not valid.", pointer) from None


def _customs_code(value: str, pointer: str | None) -> str:
    """Personal customs clearance code (개인통관고유부호): P followed by 12 digits."""
    cleaned = value.strip().upper()
    if not _CUSTOMS_CODE.match(cleaned):
        raise _fail("A customs clearance code is P followed by 12 digits.", pointer)
    return cleaned


def _device_serial(value: str, pointer: str | None) -> str:
    cleaned = value.strip()
    if not _DEVICE_SERIAL.match(cleaned):
        raise _fail("The device serial number is not valid.", pointer)
    return cleaned


VALIDATORS: dict[str, Callable[[str, str | None], str]] = {
    "name": _text(100),
    "company_name": _text(200),
    "address": _text(300),
    "company_address": _text(300),
    "phone": _phone,
    "email": _email,
    "customs_code": _customs_code,
    "device_serial": _device_serial,
}
# Items a subject can have corrected. Records of facts (access times, IP addresses, logs of
# service use, what an inquiry said) are not "errors" to correct.
CORRECTABLE_ITEMS: tuple[str, ...] = tuple(item for item in ITEMS if item in VALIDATORS)


def validate_correction(item: str, new_value: str, *, pointer: str | None = None) -> str:
    """The normalised new value for ``item`` (phone in E.164...); InvalidCorrection (422) if not."""
    item_pointer = pointer.rsplit("/", 1)[0] + "/item" if pointer else "/item"
    if item not in ITEMS:
        raise _fail("Unknown item.", item_pointer)
    validator = VALIDATORS.get(item)
    if validator is None:
        raise _fail("This item cannot be corrected.", item_pointer)
    if not isinstance(new_value, str):
        raise _fail("The value must be a string.", pointer)
    return validator(new_value, pointer)
