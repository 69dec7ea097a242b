"""The confirmation link in a partner's e-mail: a signed, single-purpose, expiring token.

``<notice id hex>.<link id>.<expiry unix>.<HMAC>``: the HMAC (the service's server secret, purpose
``partner-confirm``) binds the three, so the token confirms only that notice, only until it
expires, and nothing else accepts it. Using it records the same acknowledgement as the signed
API (``acknowledgements.record_acknowledgement``) with the link id as the acknowledgement's id,
so the unique (processor, id) index refuses a second use, whichever worker or replica serves it.
Every e-mail (first and each reminder) carries its own link.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.crypto import Crypto
from app.errors import ConfirmationLinkExpired, ConfirmationLinkInvalid, ConfirmationLinkUsed
from app.models import OutboxMessage, Processor, WebhookAcknowledgement
from app.outbox import queue
from app.webhooks import acknowledgements, notices
from app.webhooks.signing import webhook_id

PURPOSE = "partner-confirm"
LINK_PREFIX = "link_"
_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{16})\.([0-9]{1,12})\.([0-9a-f]{64})$")


@dataclass(frozen=True)
class LinkToken:
    message_id: uuid.UUID
    link_id: str
    expires_at: datetime

    @property
    def ack_id(self) -> str:
        """The acknowledgement id a use of this link records (unique per processor)."""
        return f"{LINK_PREFIX}{self.link_id}"


def issue_token(
    crypto: Crypto, *, message_id: uuid.UUID, now: datetime, days: float
) -> tuple[str, datetime]:
    """A new link token for one notice; (token, when it expires)."""
    expires = now + timedelta(days=days)
    body = f"{message_id.hex}.{secrets.token_hex(8)}.{int(expires.timestamp())}"
    return f"{body}.{crypto.mac(PURPOSE, body)}", expires.replace(microsecond=0)


def read_token(crypto: Crypto, token: str, *, now: datetime) -> LinkToken:
    """The token's notice and link, if it is ours, untampered and not expired."""
    found = _TOKEN.match(token)
    if found is None:
        raise ConfirmationLinkInvalid()
    message_hex, link_id, expiry, mac = found.groups()
    if not crypto.equal(crypto.mac(PURPOSE, f"{message_hex}.{link_id}.{expiry}"), mac):
        raise ConfirmationLinkInvalid()
    expires = datetime.fromtimestamp(int(expiry), tz=UTC)
    if now >= expires:
        raise ConfirmationLinkExpired()
    return LinkToken(uuid.UUID(hex=message_hex), link_id, expires)


@dataclass(frozen=True)
class LinkView:
    """What the confirmation page shows: the notice's reference, never the person's values."""

    webhook_id: str
    event_type: str
    processor: str
    processor_name: str
    sent_at: datetime | None
    references: list[str]
    acknowledgement: str | None
    expires_at: datetime


async def _open(
    session: AsyncSession, *, crypto: Crypto, now: datetime, token: str
) -> tuple[LinkToken, OutboxMessage, Processor]:
    link = read_token(crypto, token, now=now)
    message = await session.get(OutboxMessage, link.message_id)
    if message is None or message.kind != notices.WEBHOOK_KIND or message.target is None:
        raise ConfirmationLinkInvalid()
    processor = (
        await session.exec(select(Processor).where(Processor.code == message.target))
    ).first()
    if processor is None:
        raise ConfirmationLinkInvalid()
    used = (
        await session.exec(
            select(WebhookAcknowledgement.id).where(
                WebhookAcknowledgement.processor_code == processor.code,
                WebhookAcknowledgement.ack_message_id == link.ack_id,
            )
        )
    ).first()
    if used is not None:
        raise ConfirmationLinkUsed()
    return link, message, processor


async def open_confirmation(
    session: AsyncSession, *, crypto: Crypto, now: datetime, token: str
) -> LinkView:
    """The notice a partner's link confirms (refused if invalid, expired or already used)."""
    link, message, processor = await _open(session, crypto=crypto, now=now, token=token)
    return await _view(session, crypto=crypto, link=link, message=message, processor=processor)


async def _view(
    session: AsyncSession,
    *,
    crypto: Crypto,
    link: LinkToken,
    message: OutboxMessage,
    processor: Processor,
) -> LinkView:
    references: list[str] = []
    if message.payload is not None:
        body = json.loads(notices.notice_body(queue.read_payload(crypto, message)))
        references = [r["reference"] for r in notices.record_lines(body.get("data") or {})]
    latest = (
        await session.exec(
            select(WebhookAcknowledgement.status)
            .where(WebhookAcknowledgement.message_id == message.id)
            .order_by(WebhookAcknowledgement.received_at.desc())  # type: ignore[attr-defined]
            .limit(1)
        )
    ).first()
    return LinkView(
        webhook_id=webhook_id(message.id),
        event_type=message.topic,
        processor=processor.code,
        processor_name=processor.name,
        sent_at=message.delivered_at,
        references=references,
        acknowledgement=latest,
        expires_at=link.expires_at,
    )


async def confirm_by_link(
    session: AsyncSession,
    *,
    crypto: Crypto,
    now: datetime,
    token: str,
    notice: str,
    status: str,
    reason: str | None,
    client_ip: str | None,
) -> LinkView:
    """Record the partner's "applied" / "cannot apply" (with its reason) for the link's notice.

    ``notice`` is the reference the page showed: a link confirms its own notice only.
    """
    link, message, processor = await _open(session, crypto=crypto, now=now, token=token)
    if not crypto.equal(notice, webhook_id(message.id)):
        raise ConfirmationLinkInvalid()
    recorded = await acknowledgements.record_acknowledgement(
        session,
        crypto=crypto,
        now=now,
        message=message,
        processor_code=processor.code,
        ack_id=link.ack_id,
        status=status,
        note=reason,
        client_ip=client_ip,
        via="email_link",
    )
    if not recorded:  # the same link used at the same moment elsewhere
        raise ConfirmationLinkUsed()
    return await _view(session, crypto=crypto, link=link, message=message, processor=processor)
