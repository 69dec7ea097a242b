"""Readiness and the gauges read at scrape time."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from app.db import Database
from app.errors import ServiceUnavailable
from app.observability import Metrics
from app.outbox import queue
from app.webhooks import metrics as webhook_delivery_metrics

logger = logging.getLogger("dsr.health")


async def check_ready(db: Database, *, expected_head: str | None) -> None:
    """Raise ServiceUnavailable unless the database answers and its schema is at head."""
    try:
        async with db.engine.connect() as connection:
            current = (
                await connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
    except Exception as exc:
        logger.warning(
            "database not reachable",
            extra={"event": "health.db_unreachable", "error_type": type(exc).__name__},
        )
        raise ServiceUnavailable("The database is not reachable.") from None
    if current != expected_head:
        raise ServiceUnavailable("The database schema is not at the expected revision.")


async def refresh_gauges(db: Database, metrics: Metrics, *, now: datetime) -> None:
    """Set queue gauges from the outbox; a database hiccup leaves the last values."""
    try:
        async with db.sessionmaker() as session:
            stats = await queue.queue_stats(session, now=now)
            webhooks = await webhook_delivery_metrics.webhook_stats(session, now=now)
    except Exception:
        logger.warning("metrics refresh failed", extra={"event": "health.metrics_failed"})
        return
    for gauge in (metrics.outbox_pending, metrics.outbox_dead, metrics.outbox_oldest_pending_age):
        gauge.clear()
    for kind, status, count, age in stats:
        if status == "pending":
            metrics.outbox_pending.labels(kind).set(count)
            metrics.outbox_oldest_pending_age.labels(kind).set(age)
        else:
            metrics.outbox_dead.labels(kind).set(count)
    webhook_delivery_metrics.set_webhook_gauges(metrics, webhooks)
