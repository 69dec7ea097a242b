"""Opaque page cursors: base64 of a JSON list of strings, each part checked when read.

A cursor comes back from the client, so it is input: every part is validated before it reaches
a query (an id past bigint or a non-ASCII digit, a naive or out-of-range time answered 500).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from app.errors import InvalidInput


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps([str(part) for part in parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput("The cursor is not valid.") from None
    if (
        not isinstance(parts, list)
        or len(parts) != size
        or not all(isinstance(part, str) for part in parts)
    ):
        raise InvalidInput("The cursor is not valid.")
    return parts


BIGINT_MAX = 2**63 - 1


def cursor_id(text: str) -> int:
    """A bigint id from a cursor part: ASCII digits only ("²" is a digit to str.isdigit)."""
    if not (text.isascii() and text.isdigit()) or int(text) > BIGINT_MAX:
        raise InvalidInput("The cursor is not valid.")
    return int(text)


def cursor_instant(text: str) -> datetime:
    """An aware datetime from a cursor part, one the database can compare with."""
    try:
        at = datetime.fromisoformat(text)
        if at.tzinfo is None:
            raise ValueError("naive")
        at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput("The cursor is not valid.") from None
    return at
