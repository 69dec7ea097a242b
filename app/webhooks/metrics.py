"""Delivery statistics read at scrape time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from app.models import OutboxMessage, Processor, WebhookAttempt
from app.webhooks import notices


@dataclass
class WebhookStats:
    deliveries: list[tuple[str, str, int]]  # processor, status, count
    oldest_pending: list[tuple[str, float]]  # processor, age in seconds
    attempts_last_hour: list[tuple[str, int]]  # outcome, count
    processors: list[tuple[str, int]]  # state, count


async def webhook_stats(session: Any, *, now: datetime) -> WebhookStats:
    """What /metrics shows about webhooks, read at scrape time."""
    kind = col(OutboxMessage.kind) == notices.WEBHOOK_KIND
    deliveries = (
        await session.execute(
            sa.select(col(OutboxMessage.target), col(OutboxMessage.status), sa.func.count())
            .where(kind)
            .group_by(col(OutboxMessage.target), col(OutboxMessage.status))
        )
    ).all()
    oldest = (
        await session.execute(
            sa.select(col(OutboxMessage.target), sa.func.min(col(OutboxMessage.created_at)))
            .where(kind, col(OutboxMessage.status) == "pending")
            .group_by(col(OutboxMessage.target))
        )
    ).all()
    attempts = (
        await session.execute(
            sa.select(col(WebhookAttempt.outcome), sa.func.count())
            .where(col(WebhookAttempt.at) > now - timedelta(hours=1))
            .group_by(col(WebhookAttempt.outcome))
        )
    ).all()
    states = (
        await session.execute(
            sa.select(col(Processor.state), sa.func.count()).group_by(col(Processor.state))
        )
    ).all()
    return WebhookStats(
        deliveries=[(target or "", status, count) for target, status, count in deliveries],
        oldest_pending=[
            (target or "", max(0.0, (now - at).total_seconds())) for target, at in oldest
        ],
        attempts_last_hour=[(outcome, count) for outcome, count in attempts],
        processors=[(state, count) for state, count in states],
    )


def set_webhook_gauges(metrics: Any, stats: WebhookStats) -> None:
    """Replace the webhook gauges with a fresh reading."""
    for gauge in (
        metrics.webhook_deliveries,
        metrics.webhook_oldest_pending_age,
        metrics.webhook_attempts_last_hour,
        metrics.webhook_processors,
    ):
        gauge.clear()
    for target, status, count in stats.deliveries:
        metrics.webhook_deliveries.labels(target, status).set(count)
    for target, age in stats.oldest_pending:
        metrics.webhook_oldest_pending_age.labels(target).set(age)
    for outcome, count in stats.attempts_last_hour:
        metrics.webhook_attempts_last_hour.labels(outcome).set(count)
    for state, count in stats.processors:
        metrics.webhook_processors.labels(state).set(count)
