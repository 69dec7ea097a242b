"""What a request's notices say, and queueing them to the subject's verified channel.

Templates: ``app/templates/notices/<locale>/request_*.txt`` and ``objection_*.txt``. Each notice
has a dedupe key (``request:<id>:<key>``), so it is queued at most once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.crypto import Crypto
from app.errors import NotFound
from app.models import DsrRequest, SubjectIdentifier
from app.notifications import messages
from app.requests import deadlines
from app.requests.views import RequestFacts
from app.subjects import identifiers
from app.vocabulary import GROUNDS, TYPE_LABELS, item_label

RESULT_LABELS = {
    "approved": {"ko": "승인", "en": "approved"},
    "partially_approved": {"ko": "일부 승인(일부 거절)", "en": "partly approved, partly refused"},
    "refused": {"ko": "거절", "en": "refused"},
    "upheld": {"ko": "인용", "en": "upheld"},
    "dismissed": {"ko": "기각", "en": "dismissed"},
}


# Policy section 9: where a person can report an infringement or ask for mediation, besides
# objecting to us. Named in every notice that refuses something, and in the access report.
EXTERNAL_REMEDIES = {
    "ko": (
        "개인정보침해신고센터(한국인터넷진흥원) 118",
        "개인정보분쟁조정위원회 1833-6972",
        "경찰청 사이버수사국 182",
        "대검찰청 사이버수사과 1301",
    ),
    "en": (
        "Personal Information Infringement Report Center (KISA) 118",
        "Personal Information Dispute Mediation Committee 1833-6972",
        "Korean National Police Agency Cyber Investigation Bureau 182",
        "Supreme Prosecutors' Office Cyber Investigation Division 1301",
    ),
}


def reference(request_id: uuid.UUID) -> str:
    """The short reference people read out on the phone."""
    return request_id.hex[:8].upper()


def objection_until(request: RequestFacts, settings: Settings) -> datetime | None:
    """The end of the objection window, counted from when a refusal was notified."""
    if request.objectable_since is None:
        return None
    return deadlines.due_after(
        request.objectable_since,
        days=settings.objection_window_days,
        tz=settings.display_timezone,
    )


def notice_variables(
    request: RequestFacts,
    *,
    settings: Settings,
    explanation: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a request template may use, in the request's locale."""
    locale = request.locale if request.locale in ("ko", "en") else "ko"
    tz = settings.display_timezone
    until = objection_until(request, settings)
    refusals = [
        {
            "item": item_label(entry["item"], locale) if entry.get("item") else None,
            "ground": GROUNDS[entry["ground"]].label(locale),
            "source": GROUNDS[entry["ground"]].source(locale),
        }
        for entry in request.refusals
    ]
    return {
        "ref": reference(request.id),
        "type_label": TYPE_LABELS[request.type][locale],
        "received_date": deadlines.local_day_text(request.received_at, tz),
        "due_date": deadlines.local_day_text(request.due_at, tz),
        "result_label": RESULT_LABELS.get(request.decision or "", {}).get(locale, ""),
        "refusals": refusals,
        "explanation": explanation or "",
        "objection_until": deadlines.local_day_text(until, tz) if until else "",
        "objection_days": settings.objection_window_days,
        "partial": request.status == "partially_completed",
        "is_access": request.type == "access",
        "is_correction": request.type == "correction",
        "remedies": list(EXTERNAL_REMEDIES[locale]) if refusals else [],
        "kept": [],  # deletion: "items: law, destroyed after" lines for what is kept apart
        "report_handed_over": False,  # access taken by staff: the officer hands the report over
        "consent_kept": False,  # a withdrawn consent withdrawal: the consent stays
        "contact": settings.contact_text_ko if locale == "ko" else settings.contact_text_en,
        **(extra or {}),
    }


async def queue_request_notice(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    request: DsrRequest,
    template: str,
    key: str,
    now: datetime,
    explanation: str | None = None,
    extra: dict[str, Any] | None = None,
) -> uuid.UUID | None:
    """Queue one notice on the request's verified channel; None if this key was already sent."""
    identifier = await session.get(SubjectIdentifier, request.notice_identifier_id)
    if identifier is None:
        raise NotFound("The request's notice channel is gone.")
    return await messages.queue_notice(
        session,
        crypto=crypto,
        now=now,
        channel="sms" if request.notice_channel == "sms" else "email",
        destination=identifiers.reveal(crypto, identifier),
        template=template,
        variables=notice_variables(
            request, settings=settings, explanation=explanation, extra=extra
        ),
        locale="en" if request.locale == "en" else "ko",
        request_ref=request.id,
        dedupe_key=f"request:{request.id}:{key}",
    )
