"""Real records for the contract fuzz to reach: requests in every state, objections, verifications,
processors and delivered notices, made through the running `dsr serve` (and one worker drain for
the notices) before schemathesis starts. The hooks (``tests/fuzz/hooks.py``) put their ids in the
path parameters schemathesis generates; random ids only ever find nothing (404).

Everything is written to a JSON file that the hooks read (``DSR_FUZZ_SEED``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from app.clock import SystemClock
from app.config import Settings
from app.crypto import Crypto
from app.db import Database
from app.outbox.worker import Worker
from app.security import TokenService
from app.subjects import identifiers
from app.webhooks import notices
from app.webhooks.signing import webhook_id
from app.worker import build_context, build_registry

# The processors: one whose code the fuzz may change, disable or rotate; one that only signs
# acknowledgements (its secret must keep working for the whole run).
TARGET = "fuzz-hct"
SIGNER = "fuzz-ack"
OBJECTIONS = 4
NOTICES_EACH = 6
VERIFICATIONS = 8
SUBJECTS = 40
REASON = {"ground": "identity_not_verified", "explanation": "신분 확인이 되지 않았습니다."}


@dataclass
class Seed:
    subject_token: str  # the owner of every request below
    subjects: list[str] = field(default_factory=list)  # more verified subjects, with nothing yet
    phones: list[str] = field(default_factory=list)  # every seeded subject's number (E.164)
    requests: list[str] = field(default_factory=list)
    access_requests: list[str] = field(default_factory=list)  # with reports, or on their way
    objections: list[str] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    signer_webhook_ids: list[str] = field(default_factory=list)
    signer_secret: str = ""
    processor: str = TARGET
    signer: str = SIGNER


def phone(n: int) -> str:
    return identifiers.normalise_phone(f"010-5{n:03d}-{n:04d}")


async def verified_subjects(settings: Settings, tokens: TokenService, count: int) -> list[str]:
    """Subjects who confirmed a phone number (the identifier row a token's blind index names):
    ``phone(n)`` for the n-th."""
    db = Database.connect(settings.database_url or "", pool_size=1)
    crypto = Crypto.from_settings(settings)
    now = SystemClock().now()
    made = []
    try:
        async with db.transaction() as session:
            for n in range(count):
                row = await identifiers.remember_identifier(
                    session, crypto=crypto, kind="phone", value=phone(n), now=now
                )
                made.append(
                    tokens.issue_subject_token(
                        blind_index=row.blind_index,
                        identifier_kinds=["phone"],
                        now=now,
                        ttl=timedelta(hours=4),
                    )
                )
    finally:
        await db.dispose()
    return made


class _Seeder:
    def __init__(self, http: httpx.AsyncClient, tokens: TokenService, subject: str) -> None:
        self.http = http
        self.tokens = tokens
        now, ttl = SystemClock().now(), timedelta(hours=4)
        self.subject = subject
        self.staff = {
            name: tokens.issue_staff_token(sub=f"fuzz-{name}", roles=[role], now=now, ttl=ttl)
            for name, role in (
                ("agent", "support_agent"),
                ("officer", "privacy_officer"),
                ("officer-2", "privacy_officer"),
            )
        }

    async def call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        response = await self.http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code >= 300:
            raise SystemExit(
                f"fuzz seed: {method} {path} answered {response.status_code}: {response.text}"
            )
        return response.json() if response.content else None

    async def request(self, body: dict[str, Any]) -> str:
        return str((await self.call("POST", "/v1/requests", self.subject, body))["id"])

    async def staff_call(self, who: str, action: str, request_id: str, body: Any = None) -> None:
        path = f"/v1/staff/requests/{request_id}/{action}"
        await self.call("POST", path, self.staff[who], body if body is not None else {})


CORRECTION = {
    "type": "correction",
    "corrections": [{"item": "address", "new_value": "부산광역시 해운대구 센텀중앙로 79"}],
}


async def seed(base_url: str, settings: Settings, receiver_url: str, out: Path) -> Seed:
    """Make the records through the API, deliver the notices once, write the ids to ``out``."""
    tokens = TokenService(settings)
    owner, *others = await verified_subjects(settings, tokens, SUBJECTS + 1)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        s = _Seeder(http, tokens, owner)
        made = Seed(
            subject_token=owner, subjects=others, phones=[phone(n) for n in range(SUBJECTS + 1)]
        )
        for code in (TARGET, SIGNER):
            body = {"code": code, "name": code, "nation": "TW", "webhook_url": receiver_url}
            created = await s.call("POST", "/v1/processors", s.staff["officer"], body)
            if code == SIGNER:
                made.signer_secret = created["secret"]

        # Refused corrections, each objected to (a refusal closes the request: the next may come).
        for _ in range(OBJECTIONS):
            request_id = await s.request(CORRECTION)
            await s.staff_call("agent", "review", request_id)
            await s.staff_call("agent", "propose-refusal", request_id, REASON)
            await s.staff_call("officer-2", "refuse", request_id, REASON)
            objection = await s.call(
                "POST",
                f"/v1/requests/{request_id}/objection",
                s.subject,
                {"reason": "동의하지 않습니다."},
            )
            made.requests.append(request_id)
            made.objections.append(str(objection["id"]))
        # Withdrawn ones, then one open request of each type in a different state.
        for _ in range(2):
            request_id = await s.request({"type": "deletion", "items": ["email"]})
            await s.call("POST", f"/v1/requests/{request_id}/withdraw", s.subject, {})
            made.requests.append(request_id)
        access = await s.request({"type": "access"})
        made.requests.append(access)
        made.access_requests.append(access)
        in_review = await s.request(CORRECTION)
        await s.staff_call("agent", "review", in_review)
        approved = await s.request({"type": "deletion", "items": ["email"]})
        await s.staff_call("agent", "review", approved)
        await s.staff_call("agent", "approve", approved)
        made.requests += [
            in_review,
            approved,
            await s.request({"type": "suspension", "purposes": ["marketing"]}),
            await s.request({"type": "consent_withdrawal", "purposes": ["marketing"]}),
        ]
        # Taken by phone: the staff download the access report and hand it over.
        by_phone = {
            "request": {"type": "access"},
            "identifiers": {"phone": phone(SUBJECTS)},
            "intake_channel": "phone",
            "verification": {"method": "agent", "check": "callback_to_number_on_record"},
        }
        taken = await s.call("POST", "/v1/staff/requests", s.staff["agent"], by_phone)
        await s.staff_call("agent", "review", str(taken["id"]))
        await s.staff_call("agent", "approve", str(taken["id"]))  # the worker drain fulfils it
        made.requests.append(str(taken["id"]))
        made.access_requests.append(str(taken["id"]))
        for n in range(VERIFICATIONS):
            started = (
                await http.post(
                    "/v1/verifications",
                    json={"channel": "sms", "destination": f"010-6{n:03d}-{n:04d}"},
                )
            ).json()
            made.verifications.append(str(started["verification_id"]))

    await _deliver_notices(settings, made)
    out.write_text(json.dumps(asdict(made)), encoding="utf-8")
    return made


async def _deliver_notices(settings: Settings, made: Seed) -> None:
    """Notices to both processors, queued as fulfilment queues them, sent by one worker drain."""
    db = Database.connect(settings.database_url or "", pool_size=2)
    crypto = Crypto.from_settings(settings)
    clock = SystemClock()
    try:
        for code in (TARGET, SIGNER):
            for n in range(NOTICES_EACH):
                async with db.transaction() as session:
                    message_id = await notices.queue_processor_notice(
                        session,
                        crypto=crypto,
                        now=clock.now(),
                        processor_code=code,
                        event_type="personal_data.corrected",
                        data={"tracking_numbers": [f"QXFUZZ{n}"]},
                        request_ref=uuid.UUID(made.requests[n % len(made.requests)]),
                    )
                assert message_id is not None
                made.deliveries.append(str(message_id))
                if code == SIGNER:
                    made.signer_webhook_ids.append(webhook_id(message_id))
        async with httpx.AsyncClient() as http:
            ctx = build_context(
                settings=settings, db=db, crypto=crypto, clock=clock, http=http, datamap=None
            )
            await Worker(ctx, build_registry()).drain()
    finally:
        await db.dispose()
