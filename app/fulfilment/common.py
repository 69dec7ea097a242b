"""What every fulfilment job shares: the data map, the source retry."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from app.datamap.connectors import SourceError
from app.datamap.loader import load_configured_datamap
from app.datamap.schema import DataMap
from app.outbox.jobs import Retry, WorkerContext

logger = logging.getLogger("dsr.access")


DATAMAP = "datamap"  # WorkerContext.extras key: the loaded DataMap (loaded on first use if absent)
SOURCE_RETRY = (30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600)


def source_retry(message: Any, exc: SourceError, *, request_id: uuid.UUID, step: str) -> Retry:
    """Retry a fulfilment job later on ``SOURCE_RETRY``; logs the source name only."""
    logger.warning(
        "fulfilment postponed: a source did not answer",
        extra={
            "event": f"{step}.source_failed",
            "request_ref": str(request_id),
            "error_type": type(exc).__name__,
            "attempt": getattr(message, "attempts", None),
        },
    )
    attempt = max(1, int(getattr(message, "attempts", 1) or 1))
    delay = timedelta(seconds=SOURCE_RETRY[min(attempt, len(SOURCE_RETRY)) - 1])
    return Retry(f"source {exc.source} unavailable: {exc.reason}", delay)


def context_datamap(ctx: WorkerContext) -> DataMap:
    datamap = ctx.extras.get(DATAMAP)
    if datamap is None:
        datamap = load_configured_datamap(ctx.settings)
        ctx.extras[DATAMAP] = datamap
    return datamap


def self_database_url(ctx: WorkerContext) -> str:
    return ctx.db.engine.url.render_as_string(hide_password=False)
