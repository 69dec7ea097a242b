"""A stand-in partner carrier for the demo: receives our webhooks, verifies them, acknowledges.

`dsr demo-partner` runs it on 127.0.0.1; the demo's processors point their webhook URL at it.
It is what a real partner implements, in a few lines (see docs/webhooks.md).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.audit import trail
from app.models import Processor

SECRETS_FILE = "demo-partner-secrets.json"


def secrets_path(data_dir: Path) -> Path:
    return data_dir / SECRETS_FILE


def save_secrets(data_dir: Path, secrets: dict[str, str]) -> None:
    """Keep the demo processors' webhook secrets (dev only) for the stand-in partner, mode 0600."""
    if not secrets:
        return
    path = secrets_path(data_dir)
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    stored.update(secrets)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(stored, handle, indent=2)


def load_secrets(data_dir: Path) -> dict[str, str]:
    path = secrets_path(data_dir)
    return json.loads(path.read_text()) if path.exists() else {}


async def point_processors_at(
    session: AsyncSession, *, now: datetime, codes: list[str], old_url: str, new_url: str
) -> int:
    """Move the demo processors still on the stand-in partner's old address to its new one.

    A URL someone changed by hand (not ``<old_url>/<code>``) is left alone. Returns how many moved.
    """
    old, new = old_url.rstrip("/"), new_url.rstrip("/")
    rows = (await session.exec(select(Processor).where(col(Processor.code).in_(codes)))).all()
    moved = 0
    for processor in rows:
        if processor.webhook_url != f"{old}/{processor.code}":
            continue
        processor.webhook_url = f"{new}/{processor.code}"
        processor.updated_at = now
        session.add(processor)
        await trail.record(
            session,
            now=now,
            actor="cli:demo-partner",
            role="system",
            action="processor.updated",
            target_type="processor",
            target_id=processor.code,
            details={"fields": ["webhook_url"], "state": processor.state},
        )
        moved += 1
    await session.flush()
    return moved


def signed_acknowledgement(
    secret: str, *, code: str, webhook_id: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an acknowledgement, signed as the service signs its notices."""
    body = json.dumps({"webhook_id": webhook_id, "status": "applied"}).encode()
    msg_id = f"ack_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return body, {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "webhook-processor": code,
    }


def partner_app(
    secrets: dict[str, str], *, service_url: str, acknowledge: bool = True
) -> Starlette:
    """The receiver: POST /{code} verifies the signature, prints the notice, acknowledges it."""

    async def receive(request: Request) -> Response:
        code = request.path_params["code"]
        secret = secrets.get(code)
        body = await request.body()
        if secret is None:
            return Response(status_code=404)
        try:
            event: Any = Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            print(f"[{code}] rejected: bad signature", flush=True)
            return Response(status_code=401)
        refs = event.get("data", {}).get("records", event.get("data", {}))
        shown = json.dumps(refs, ensure_ascii=False)[:200]
        print(f"[{code}] {event.get('type')} verified: {shown}", flush=True)
        if not acknowledge:
            return Response(status_code=204)
        # Answer first, acknowledge after (docs/webhooks.md: answer quickly, apply later).
        ack = BackgroundTask(_acknowledge, secret, code, request.headers["webhook-id"])
        return Response(status_code=204, background=ack)

    async def _acknowledge(secret: str, code: str, webhook_id: str) -> None:
        ack_body, headers = signed_acknowledgement(secret, code=code, webhook_id=webhook_id)
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                await client.post(
                    f"{service_url.rstrip('/')}/v1/partner/acknowledgements",
                    content=ack_body,
                    headers=headers,
                )
            except httpx.HTTPError:
                print(f"[{code}] could not acknowledge (service down?)", flush=True)

    return Starlette(routes=[Route("/{code}", receive, methods=["POST"])])
