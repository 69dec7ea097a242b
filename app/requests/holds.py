"""What a request holds from intake until it ends: restrictions and provisional suspensions.

- A **correction** restricts its items ("not used or provided", policy section 6) from intake,
  in the intake transaction, keyed by every blind index the request knows; narrowed to the
  record named by ``record_ref`` when the subject named one.
- A **consent withdrawal** for an optional purpose (``marketing``) suspends that purpose
  provisionally at intake: nothing contracted depends on it, so there is nothing to weigh.
- A **suspension** holds nothing at intake: the decision weighs a contract under way (PIPA
  Art. 37(2)4), and an in-flight delivery must not stop before that decision.

Everything held is released when the request is refused, withdrawn or completed (completion by
the fulfilment job releases it in its own transaction; ``release_holds`` is idempotent).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import DsrRequest
from app.retention import restrictions
from app.retention.restrictions import RestrictedItem
from app.vocabulary import OPTIONAL_PURPOSES


def optional_purposes(purposes: list[str]) -> list[str]:
    """The purposes of a consent withdrawal that rest on optional consent."""
    return [purpose for purpose in purposes if purpose in OPTIONAL_PURPOSES]


def intake_holds(
    *,
    request_type: str,
    subject_keys: list[str],
    request_id: uuid.UUID,
    body: dict[str, Any],
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The restriction and suspension rows intake writes with the request (see the module)."""
    if request_type == "correction":
        items = [
            RestrictedItem(entry["item"], record_ref=entry.get("record_ref"))
            for entry in body.get("corrections", [])
        ]
        restricted = restrictions.restriction_rows(
            subject_keys=subject_keys, items=items, request_id=request_id, now=now
        )
        return restricted, []
    if request_type == "consent_withdrawal":
        suspended = restrictions.suspension_rows(
            subject_keys=subject_keys,
            purposes=optional_purposes(list(body.get("purposes") or [])),
            request_id=request_id,
            now=now,
            consent_withdrawal=True,
        )
        return [], suspended
    return [], []


async def release_holds(session: AsyncSession, *, request: DsrRequest, now: datetime) -> int:
    """The request ended without (or after) fulfilment: lift what intake held."""
    if request.type == "correction":
        return await restrictions.lift_restrictions(session, request_id=request.id, now=now)
    if request.type == "consent_withdrawal":
        return await restrictions.lift_suspension(session, request_id=request.id, now=now)
    return 0


async def release_after_completion(
    session: AsyncSession, *, request: DsrRequest, now: datetime
) -> int:
    """A completed correction no longer restricts its items (suspensions stay: they are the
    result)."""
    if request.type == "correction":
        return await restrictions.lift_restrictions(session, request_id=request.id, now=now)
    return 0
