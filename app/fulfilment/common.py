"""What every fulfilment job shares: the data map, the source retry, completing the request."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import Settings
from app.crypto import Crypto
from app.datamap.connectors import SourceError
from app.datamap.loader import load_configured_datamap
from app.datamap.schema import DataMap
from app.outbox.jobs import Retry, WorkerContext
from app.requests import completion

logger = logging.getLogger("dsr.access")


def source_retry(message: Any, exc: SourceError, *, request_id: uuid.UUID, step: str) -> Retry:
    """Retry a fulfilment job later (``FULFILMENT_RETRY``); logs the source name only."""
    logger.warning(
        "fulfilment postponed: a source did not answer",
        extra={
            "event": f"{step}.source_failed",
            "request_ref": str(request_id),
            "error_type": type(exc).__name__,
            "attempt": getattr(message, "attempts", None),
        },
    )
    return Retry(f"source {exc.source} unavailable: {exc.reason}")


def context_datamap(ctx: WorkerContext) -> DataMap:
    """The worker's data map, loaded from settings on first use."""
    if ctx.datamap is None:
        ctx.datamap = load_configured_datamap(ctx.settings)
    return ctx.datamap


def self_database_url(ctx: WorkerContext) -> str:
    return ctx.db.engine.url.render_as_string(hide_password=False)


async def complete(
    session: AsyncSession,
    *,
    crypto: Crypto,
    settings: Settings,
    now: datetime,
    request_id: uuid.UUID,
    result: dict[str, Any],
    refused_items: list[dict[str, Any]] | None = None,
    notice_extra: dict[str, Any] | None = None,
) -> None:
    """Complete the request in the job's final transaction (partially, when parts are refused).

    The one way a fulfilment job finishes: access (through ``WorkerContext.access_report_ready``),
    deletion, and ``fulfil.apply`` for correction, suspension and consent withdrawal.
    """
    await completion.complete_request(
        session,
        crypto=crypto,
        settings=settings,
        now=now,
        request_id=request_id,
        outcome="partially_completed" if refused_items else "completed",
        result=result,
        refused_items=refused_items or None,
        notice_extra=notice_extra,
    )
