"""Notices to data subjects by SMS or e-mail: queued in the outbox, sent through an HTTP gateway.

Templates live in ``app/templates/notices/<locale>/<template>.txt``; the first line of an e-mail
template is its subject. Korean is the default locale.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import httpx
import jinja2

from app.config import Settings
from app.crypto import Crypto
from app.models import OutboxMessage
from app.observability import dev_console_line
from app.outbox import queue
from app.outbox.jobs import Outcome, Retry, Sent, WorkerContext

logger = logging.getLogger("dsr.notifications")

Channel = Literal["sms", "email"]
# Subjects get ko or en; partners' e-mails also come in Japanese and Chinese (simplified for the
# mainland, traditional for Taiwan and Hong Kong), for the templates that have them.
Locale = Literal["ko", "en", "ja", "zh-Hans", "zh-Hant"]
LOCALES: tuple[Locale, ...] = ("ko", "en", "ja", "zh-Hans", "zh-Hant")
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "notices"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=False,  # plain-text SMS and e-mail bodies  # noqa: S701
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=False,  # templates ship with the code: no stat() per notice
    )


@lru_cache(maxsize=256)
def _template_path(template: str, locale: Locale) -> str:
    """Which file renders ``template`` in ``locale`` (templates ship with the code: looked up
    once, not with a stat() per notice)."""
    chosen: Locale = locale if locale in LOCALES else "ko"
    if not (TEMPLATE_DIR / chosen / f"{template}.txt").is_file():
        chosen = "en" if chosen not in ("ko", "en") else chosen  # a subject's template: ko/en
    return f"{chosen}/{template}.txt"


def render_notice(template: str, *, locale: Locale, variables: dict[str, Any]) -> str:
    """The text of a notice in one locale (StrictUndefined: a missing variable is a bug)."""
    path = _template_path(template, locale)
    return _environment().get_template(path).render(**variables).strip()


def notice_payload(
    *,
    channel: Channel,
    destination: str,
    template: str,
    variables: dict[str, Any],
    locale: Locale = "ko",
) -> dict[str, Any]:
    """A notice rendered now: what the outbox message carries (encrypted) to the gateway."""
    text = render_notice(template, locale=locale, variables=variables)
    subject: str | None = None
    body = text
    if channel == "email":
        subject, _, rest = text.partition("\n")
        # A one-line notice (the verification code) is both the subject and the body.
        body = rest if rest.strip() else text
    return {
        "channel": channel,
        "to": destination,
        "template": template,
        "locale": locale,
        "variables": variables,
        "subject": subject.strip() if subject else None,
        "body": body.strip(),
    }


async def queue_notice(
    session: Any,
    *,
    crypto: Crypto,
    now: datetime,
    channel: Channel,
    destination: str,
    template: str,
    variables: dict[str, Any],
    locale: Locale = "ko",
    request_ref: uuid.UUID | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
) -> uuid.UUID | None:
    """Render a notice now and queue it for the gateway in the caller's transaction."""
    return await queue.enqueue(
        session,
        crypto=crypto,
        now=now,
        kind="notification",
        topic=template,
        target=channel,
        payload=notice_payload(
            channel=channel,
            destination=destination,
            template=template,
            variables=variables,
            locale=locale,
        ),
        request_ref=request_ref,
        dedupe_key=dedupe_key,
        max_attempts=max_attempts,
    )


def gateway_url(settings: Settings, channel: str) -> str | None:
    return settings.sms_gateway_url if channel == "sms" else settings.email_gateway_url


async def send_notice(
    http: httpx.AsyncClient, settings: Settings, *, message_id: uuid.UUID, payload: dict[str, Any]
) -> tuple[bool, str | None]:
    """POST one notice to the gateway; (sent, error). Never logs the destination or body."""
    url = gateway_url(settings, payload["channel"])
    if url is None:
        if settings.env == "dev":
            # Development without a gateway: show the message so a person can try the flow.
            code = (payload.get("variables") or {}).get("code")
            if payload.get("template") == "verification_code" and code:
                dev_console_line(f"one-time code {code} ({payload['channel']} to {payload['to']})")
            else:
                dev_console_line(
                    f"[dsr dev {payload['channel']} to {payload['to']}] {payload['body']}"
                )
            return True, None
        return False, "no gateway configured"
    body = {key: payload.get(key) for key in ("channel", "to", "template", "variables", "body")}
    if payload.get("subject"):
        body["subject"] = payload["subject"]
    headers = {"Idempotency-Key": str(message_id)}
    if settings.gateway_token:
        headers["Authorization"] = f"Bearer {settings.gateway_token}"
    try:
        response = await http.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        return False, f"gateway unreachable: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return True, None
    return False, f"gateway answered {response.status_code}"


async def handle_notification(message: OutboxMessage, payload: Any, ctx: WorkerContext) -> Outcome:
    """Worker handler for ``kind="notification"``: one gateway call, retried with backoff."""
    sent, error = await send_notice(ctx.http, ctx.settings, message_id=message.id, payload=payload)
    logger.info(
        "notice attempt",
        extra={
            "event": "notice.attempt",
            "channel": payload.get("channel"),
            "topic": message.topic,
            "message_id": str(message.id),
            "outcome": "sent" if sent else "retry",
        },
    )
    return Sent() if sent else Retry(error or "not sent")
