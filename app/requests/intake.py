"""Intake: a request received, checked, and recorded with its deadline."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import trail
from app.audit.actors import SYSTEM, Actor
from app.config import Settings
from app.crypto import Crypto
from app.db import driver_connection
from app.errors import DuplicateRequest, InvalidInput, Unauthenticated
from app.models import SubjectIdentifier
from app.models.requests import OPEN_STATUSES
from app.notifications import messages
from app.outbox import queue
from app.requests import deadlines, holds, idempotency, jobs
from app.requests import intake_sql as sql
from app.requests.bodies import scope_of
from app.requests.lifecycle import KINDS, Intake, Submitted, seal
from app.requests.notices import notice_variables
from app.requests.views import summary
from app.schemas.requests import RequestCreate
from app.subjects import identifiers as subjects

# ---------------------------------------------------------------------------- intake
# One statement, ``dsr_submit_request``, on an autocommit connection or in the staff intake's
# unit of work: see ``intake_sql``.


@dataclass(frozen=True)
class Received:
    """The request as intake writes it: what its first notice and its answer read."""

    id: uuid.UUID
    type: str
    locale: str
    received_at: datetime
    due_at: datetime
    status: str = "received"
    decision: str | None = None
    refusals: list[dict[str, Any]] = field(default_factory=list)
    objectable_since: datetime | None = None


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


class _Rows:
    """History events, audit entries and outbox rows of one intake, as ``dsr_submit_request``
    takes them (one JSON document: see migration 0024)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []

    def record(
        self,
        *,
        actor: Actor,
        action: str,
        to_status: str | None = None,
        details: dict[str, Any],
    ) -> None:
        """One history event and its audit entry, as ``lifecycle.record`` writes them."""
        audit_details = {**details, "from": None, "to": to_status} if to_status else details
        entry = trail.entry_values(
            now=self.now,
            actor=actor.id,
            role=actor.role,
            action=f"request.{action}",
            client_ip=actor.client_ip,
            details=audit_details,
        )
        self.events.append(
            {
                "actor": actor.id,
                "role": actor.role,
                "action": action,
                "from_status": None,
                "to_status": to_status,
                "details": details,
            }
        )
        self.audit.append(
            {
                "actor": actor.id,
                "role": actor.role,
                "action": entry["action"],
                "client_ip": entry["client_ip"],
                "client_ip_encrypted": _b64(entry["client_ip_encrypted"]),
                "details": entry["details"],  # JSON text: what the audit chain hashes
            }
        )

    def message(self, values: dict[str, Any]) -> uuid.UUID:
        message_id: uuid.UUID = values["id"]
        self.outbox.append(
            {
                "id": str(message_id),
                "kind": values["kind"],
                "topic": values["topic"],
                "target": values["target"],
                "payload": _b64(values["payload"]),
                "max_attempts": values["max_attempts"],
                "next_attempt_at": values["next_attempt_at"].isoformat(),
                "dedupe_key": values["dedupe_key"],
            }
        )
        return message_id

    def document(
        self, *, restrictions: list[dict[str, Any]], suspensions: list[dict[str, Any]]
    ) -> str:
        return json.dumps(
            {
                "events": self.events,
                "audit": self.audit,
                "outbox": self.outbox,
                "restrictions": restrictions,
                "suspensions": suspensions,
            },
            default=str,
        )


def _received_notice(
    rows: _Rows,
    *,
    crypto: Crypto,
    settings: Settings,
    received: Received,
    intake: Intake,
    now: datetime,
) -> None:
    """The "received" notice, rendered and queued, and its ``notice_queued`` history event."""
    channel: messages.Channel = "sms" if intake.notice_identifier.kind == "phone" else "email"
    values = queue.message_values(
        crypto=crypto,
        now=now,
        kind="notification",
        topic="request_received",
        target=channel,
        payload=messages.notice_payload(
            channel=channel,
            destination=subjects.reveal(crypto, intake.notice_identifier),
            template="request_received",
            variables=notice_variables(received, settings=settings),
            locale="en" if received.locale == "en" else "ko",
        ),
        request_ref=received.id,
        dedupe_key=f"request:{received.id}:received",
    )
    message_id = rows.message(values)
    rows.record(
        actor=SYSTEM,
        action="notice_queued",
        details={
            "template": "request_received",
            "channel": channel,
            "message_id": str(message_id),
        },
    )


@dataclass(frozen=True)
class KeyClaim:
    """An Idempotency-Key for ``dsr_submit_request``: claimed by it (``new``) or before it."""

    record_id: uuid.UUID
    new: bool = False
    principal: str | None = None
    key: str | None = None
    fingerprint: str | None = None
    expires_at: datetime | None = None


class _KeyUsed(Exception):
    """The Idempotency-Key was claimed by an earlier call: its answer decides."""


async def _create(
    connection: asyncpg.Connection,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    body: RequestCreate,
    intake: Intake,
    actor: Actor,
    claim: KeyClaim | None,
) -> dict[str, Any]:
    """Write the request and everything that comes with it; returns the 201 answer."""
    indexes = [identifier.blind_index for identifier in intake.identifiers]
    tz = settings.display_timezone
    due = deadlines.due_after(now, days=settings.due_days[body.type], tz=tz)
    received = Received(
        id=uuid.uuid4(),
        type=body.type,
        locale=body.locale or settings.default_locale,
        received_at=now,
        due_at=due,
    )
    stored = body.body()
    scope = scope_of(body.type, stored)
    rows = _Rows(now)
    rows.record(
        actor=actor,
        action="submitted",
        to_status="received",
        details={
            "type": body.type,
            "intake_channel": intake.intake_channel,
            "verification_method": intake.verification_method,
            "scope": scope,
            "due_at": due.isoformat(),
        },
    )
    _received_notice(
        rows, crypto=crypto, settings=settings, received=received, intake=intake, now=now
    )
    if (
        settings.auto_approve_access
        and body.type == "access"
        and intake.verification_method == "otp"
    ):
        # Approving (review, decision, fulfilment job) is the worker's: intake only queues it.
        rows.message(jobs.auto_review_message(crypto=crypto, request_id=received.id, now=now))
    restricted, suspended = holds.intake_holds(
        request_type=body.type,
        subject_keys=indexes,
        request_id=received.id,
        body=stored,
        now=now,
    )
    answer = summary(received, now=now, tz=tz)
    outcome = await connection.fetchrow(
        sql.SUBMIT_REQUEST,
        received.id,
        body.type,
        list(OPEN_STATUSES),
        indexes,
        [identifier.id for identifier in intake.identifiers],
        intake.notice_identifier.id,
        "sms" if intake.notice_identifier.kind == "phone" else "email",
        intake.intake_channel,
        intake.verification_method,
        json.dumps(intake.verification, default=str),
        received.locale,
        json.dumps(scope),
        seal(crypto, received.id, "body", stored),
        actor.id,
        now,
        due,
        rows.document(restrictions=restricted, suspensions=suspended),
        json.dumps(answer),
        claim.record_id if claim else None,
        bool(claim and claim.new),
        claim.principal if claim else None,
        claim.key if claim else None,
        claim.fingerprint if claim else None,
        claim.expires_at if claim else None,
    )
    assert outcome is not None
    if outcome["outcome"] == "key_used":
        raise _KeyUsed()
    if outcome["outcome"] == "duplicate":
        open_id = outcome["open_request_id"]
        raise DuplicateRequest(
            f"An open {body.type} request exists: {open_id}. Follow it, or withdraw it first.",
            open_request_id=str(open_id),
        )
    return answer


async def _settle_key(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    fingerprint_body: Any,
    actor: Actor,
    idempotency_key: str,
) -> idempotency.Claim:
    return await idempotency.claim_key(
        session,
        principal=actor.id,
        key=idempotency_key,
        fingerprint=idempotency.fingerprint(crypto, fingerprint_body),
        now=now,
        ttl=timedelta(hours=settings.idempotency_ttl_hours),
    )


async def submit_subject_request(
    connection: asyncpg.Connection,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    subject_index: str,
    body: RequestCreate,
    actor: Actor,
    idempotency_key: str | None = None,
    intake_channel: Literal["app", "web"] = "app",
    also_indexes: Sequence[str] = (),
) -> Submitted:
    """A request from the app or the privacy center, by a subject verified by one-time code.

    ``connection``: autocommit (one round trip writes everything; the app's intake), or the
    asyncpg connection inside a unit of work (``db.driver_connection``; the privacy center).
    ``also_indexes``: further identifiers the same token proved; the request covers them all.
    """
    wanted = list(dict.fromkeys([subject_index, *also_indexes]))
    found = {row["blind_index"]: row for row in await connection.fetch(sql.IDENTIFIERS, wanted)}
    if any(index not in found for index in wanted):
        raise Unauthenticated("The verified identifier is not known: verify again.")
    known = [
        subjects.KnownIdentifier(
            id=found[index]["id"],
            kind=found[index]["kind"],
            blind_index=index,
            value_encrypted=found[index]["value_encrypted"],
        )
        for index in wanted
    ]
    intake = Intake(
        identifiers=known,
        notice_identifier=known[0],
        intake_channel=intake_channel,
        verification_method="otp",
        verification={"method": "otp", "identifier_kind": known[0].kind},
    )
    claim: KeyClaim | None = None
    fingerprint = ""
    if idempotency_key is not None:
        fingerprint = idempotency.fingerprint(crypto, body.model_dump(mode="json"))
        claim = KeyClaim(
            record_id=uuid.uuid4(),
            new=True,
            principal=actor.id,
            key=idempotency_key,
            fingerprint=fingerprint,
            expires_at=now + timedelta(hours=settings.idempotency_ttl_hours),
        )
    try:
        answer = await _create(
            connection,
            crypto=crypto,
            settings=settings,
            now=now,
            body=body,
            intake=intake,
            actor=actor,
            claim=claim,
        )
    except _KeyUsed:
        assert idempotency_key is not None
        replay = await idempotency.earlier_answer(
            connection, principal=actor.id, key=idempotency_key, fingerprint=fingerprint
        )
        return Submitted(answer=replay, replayed=True)
    return Submitted(answer=answer, replayed=False)


async def submit_staff_request(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    body: RequestCreate,
    identifiers: dict[str, str],
    notify_via: dict[str, str] | None,
    intake_channel: str,
    verification: dict[str, Any],
    actor: Actor,
    idempotency_key: str | None = None,
) -> Submitted:
    """A request taken by phone or at the counter; identity verified by the agent or via proof."""

    async def intake_of() -> Intake:
        own: list[SubjectIdentifier] = []
        for kind in KINDS:
            raw = identifiers.get(kind)
            if raw:
                value = subjects.normalise(kind, raw)
                own.append(
                    await subjects.remember_identifier(
                        session,
                        crypto=crypto,
                        kind=kind,
                        value=value,
                        now=now,
                    )
                )
        if not own:
            raise InvalidInput("Give the subject's phone number or e-mail address.")
        notice = own[0]
        if notify_via is not None:
            notice_kind: subjects.IdentifierKind = (
                "phone" if notify_via["channel"] == "sms" else "email"
            )
            destination = notify_via.get("destination")
            if destination:
                value = subjects.normalise(notice_kind, destination)
                notice = await subjects.remember_identifier(
                    session,
                    crypto=crypto,
                    kind=notice_kind,
                    value=value,
                    now=now,
                )
            else:
                matching = [identifier for identifier in own if identifier.kind == notice_kind]
                if not matching:
                    raise InvalidInput(f"No {notice_kind} was given to send notices to.")
                notice = matching[0]
        own.sort(key=lambda identifier: identifier.id != notice.id)  # primary: the notified one
        return Intake(
            identifiers=own,
            notice_identifier=notice,
            intake_channel=intake_channel,
            verification_method=verification["method"],
            verification={**verification, "checked_by": actor.id},
        )

    claim: KeyClaim | None = None
    if idempotency_key is not None:
        settled = await _settle_key(
            session,
            crypto=crypto,
            settings=settings,
            now=now,
            fingerprint_body={
                "request": body.model_dump(mode="json"),
                "identifiers": identifiers,
                "notify": notify_via,
                "intake_channel": intake_channel,
                "verification": verification,
            },
            actor=actor,
            idempotency_key=idempotency_key,
        )
        if settled.replay is not None:
            return Submitted(answer=settled.replay, replayed=True)
        claim = KeyClaim(record_id=settled.record_id)
    intake = await intake_of()
    answer = await _create(
        await driver_connection(session),
        crypto=crypto,
        settings=settings,
        now=now,
        body=body,
        intake=intake,
        actor=actor,
        claim=claim,
    )
    return Submitted(answer=answer, replayed=False)
