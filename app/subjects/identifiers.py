"""Data subjects' identifiers: normalising, masking, and keeping them encrypted."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.datamap.identifiers import SubjectIdentifiers
from app.errors import InvalidInput
from app.models import SubjectIdentifier

IdentifierKind = Literal["phone", "email"]


# The form almost every number arrives in: a Korean 010 mobile number, plain or with hyphens or
# spaces. Answered without phonenumbers' general parser (20 µs, the usage check's largest own
# cost); 010-5XXX numbers go to the parser, which knows 010-596x to 010-599x are not assigned.
# tests/test_identifiers.py checks every middle group against phonenumbers.
_MOBILE_010 = re.compile(r"010([- ]?)([0-46-9][0-9]{3})\1([0-9]{4})")


def normalise_phone(raw: str, *, region: str = "KR") -> str:
    """E.164 for a number as people type it (010-1234-5678, 01012345678, +82 10 1234 5678)."""
    if region == "KR" and (mobile := _MOBILE_010.fullmatch(raw)) is not None:
        return f"+8210{mobile[2]}{mobile[3]}"
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidInput("The phone number is not valid.") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("The phone number is not valid.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """The address with its domain normalised and the whole lower-cased (as it is matched)."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidInput("The e-mail address is not valid.") from None
    return result.normalized.lower()


def normalise(kind: IdentifierKind, raw: str) -> str:
    return normalise_phone(raw) if kind == "phone" else normalise_email(raw)


def mask(kind: IdentifierKind, value: str) -> str:
    """What may be shown back: a number's last digits, an address's first letter and domain."""
    if kind == "phone":
        national = phonenumbers.format_number(
            phonenumbers.parse(value), phonenumbers.PhoneNumberFormat.NATIONAL
        )
        groups = national.split("-")
        if len(groups) < 3:
            return "*" * max(0, len(national) - 4) + national[-4:]
        middle = ["*" * len(group) for group in groups[1:-1]]
        return "-".join([groups[0], *middle, groups[-1]])
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def blind_index(crypto: Crypto, kind: IdentifierKind, normalised: str) -> str:
    return crypto.blind_index(kind, normalised)


async def remember_identifier(
    session: AsyncSession, *, crypto: Crypto, kind: IdentifierKind, value: str, now: datetime
) -> SubjectIdentifier:
    """Store a verified, normalised identifier once (encrypted); return its row."""
    index = crypto.blind_index(kind, value)
    await session.execute(
        insert(SubjectIdentifier)
        .values(
            kind=kind,
            blind_index=index,
            value_encrypted=crypto.encrypt(value, context=f"identifier:{index}"),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["blind_index"])
    )
    found = await find_identifier(session, blind_index=index)
    assert found is not None
    return found


async def identifiers_of(
    session: AsyncSession, *, crypto: Crypto, identifier_ids: list[uuid.UUID]
) -> SubjectIdentifiers:
    """The verified identifiers with these ids, decrypted (phone E.164, e-mail lower-case)."""
    rows = (
        await session.exec(
            select(SubjectIdentifier).where(col(SubjectIdentifier.id).in_(identifier_ids))
        )
    ).all()
    values: dict[str, str] = {}
    for row in rows:
        values.setdefault(row.kind, reveal(crypto, row))
    return SubjectIdentifiers(phone=values.get("phone"), email=values.get("email"))


async def find_identifier(session: AsyncSession, *, blind_index: str) -> SubjectIdentifier | None:
    return (
        await session.exec(
            select(SubjectIdentifier).where(col(SubjectIdentifier.blind_index) == blind_index)
        )
    ).first()


class IdentifierFacts(Protocol):
    """A verified identifier as a row (``SubjectIdentifier``) or as read by a hot path."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def kind(self) -> str: ...
    @property
    def blind_index(self) -> str: ...
    @property
    def value_encrypted(self) -> bytes: ...


@dataclass(frozen=True)
class KnownIdentifier:
    """The columns of a ``subject_identifier`` row, without an ORM object."""

    id: uuid.UUID
    kind: str
    blind_index: str
    value_encrypted: bytes


def reveal(crypto: Crypto, identifier: IdentifierFacts) -> str:
    """The identifier in clear, for sending a notice or querying a source; never log it."""
    return crypto.decrypt_str(
        identifier.value_encrypted, context=f"identifier:{identifier.blind_index}"
    )
