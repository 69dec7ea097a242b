"""Processors registry and webhook deliveries (privacy officer, admin)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.deps import OfficerDep
from app.models import Processor
from app.schemas.common import PROBLEM_RESPONSES
from app.schemas.processors import (
    AcknowledgementPublic,
    AttemptPublic,
    BulkReplay,
    DeliveryCounts,
    DeliveryDetail,
    DeliveryPage,
    DeliveryPublic,
    DeliveryStatus,
    ProcessorCreate,
    ProcessorCreated,
    ProcessorPublic,
    ProcessorUpdate,
    ReplayResult,
    SecretRotated,
)
from app.webhooks import deliveries, processors
from app.webhooks.deliveries import DeliveryView
from app.webhooks.processors import ProcessorView
from app.webhooks.signing import EventType, webhook_id

router = APIRouter(prefix="/v1", tags=["processors"], responses=PROBLEM_RESPONSES)


def processor_public(processor: Processor, counts: dict[str, int] | None = None) -> ProcessorPublic:
    return ProcessorPublic(
        code=processor.code,
        name=processor.name,
        nation=processor.nation,
        contact=processor.contact,
        webhook_url=processor.webhook_url,
        events=processor.events,
        state=processor.state,
        disabled_reason=processor.disabled_reason,
        disabled_at=processor.disabled_at,
        failing_since=processor.failing_since,
        secret_rotated_at=processor.secret_rotated_at,
        previous_secret_expires_at=processor.previous_secret_expires_at,
        created_at=processor.created_at,
        updated_at=processor.updated_at,
        deliveries=DeliveryCounts(**counts) if counts is not None else None,
    )


def _view_public(view: ProcessorView) -> ProcessorPublic:
    return processor_public(view.processor, view.counts)


def delivery_public(view: DeliveryView) -> DeliveryPublic:
    message = view.message
    ack = (
        AcknowledgementPublic(status=view.ack_status, received_at=view.ack_at, note=view.ack_note)
        if view.ack_status and view.ack_at
        else None
    )
    return DeliveryPublic(
        id=message.id,
        webhook_id=webhook_id(message.id),
        processor=message.target or "",
        event_type=message.topic,
        status=message.status,
        attempts=message.attempts,
        max_attempts=message.max_attempts,
        created_at=message.created_at,
        next_attempt_at=message.next_attempt_at if message.status == "pending" else None,
        delivered_at=message.delivered_at,
        last_error=message.last_error,
        request_ref=message.request_ref,
        acknowledgement=ack,
    )


def delivery_detail(view: DeliveryView) -> DeliveryDetail:
    return DeliveryDetail(
        **delivery_public(view).model_dump(),
        attempt_log=[
            AttemptPublic(
                attempt=item.attempt,
                at=item.at,
                outcome=item.outcome,
                status_code=item.status_code,
                latency_ms=item.latency_ms,
                error=item.error,
                response_excerpt=item.response_excerpt,
            )
            for item in view.attempts
        ],
    )


@router.post(
    "/processors",
    status_code=status.HTTP_201_CREATED,
    response_model=ProcessorCreated,
    summary="Register a processor; its webhook secret is shown this once",
)
async def register_processor(body: ProcessorCreate, ctx: OfficerDep) -> ProcessorCreated:
    processor, secret = await processors.register_processor(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        actor=ctx.actor,
        details=body,
    )
    return ProcessorCreated(**processor_public(processor).model_dump(), secret=secret)


@router.get("/processors", response_model=list[ProcessorPublic], summary="List processors")
async def list_processors(ctx: OfficerDep) -> list[ProcessorPublic]:
    return [processor_public(item) for item in await processors.list_processors(ctx.session)]


@router.get(
    "/processors/{code}",
    response_model=ProcessorPublic,
    summary="A processor with its delivery counts",
)
async def get_processor(code: str, ctx: OfficerDep) -> ProcessorPublic:
    view = await processors.get_processor(
        ctx.session, settings=ctx.settings, now=ctx.now, code=code
    )
    return _view_public(view)


@router.patch(
    "/processors/{code}",
    response_model=ProcessorPublic,
    summary="Change a processor (disabling holds its notices, enabling sends them)",
)
async def update_processor(code: str, body: ProcessorUpdate, ctx: OfficerDep) -> ProcessorPublic:
    view = await processors.update_processor(
        ctx.session,
        settings=ctx.settings,
        now=ctx.now,
        actor=ctx.actor,
        code=code,
        changes=body,
    )
    return _view_public(view)


@router.post(
    "/processors/{code}/rotate-secret",
    response_model=SecretRotated,
    summary="A new webhook secret (shown once); the old one signs too during the grace period",
)
async def rotate_secret(code: str, ctx: OfficerDep) -> SecretRotated:
    processor, secret = await processors.rotate_secret(
        ctx.session,
        crypto=ctx.crypto,
        settings=ctx.settings,
        now=ctx.now,
        actor=ctx.actor,
        code=code,
    )
    assert processor.previous_secret_expires_at is not None
    return SecretRotated(
        code=processor.code,
        secret=secret,
        previous_secret_expires_at=processor.previous_secret_expires_at,
    )


def _page(views: list[DeliveryView], cursor: str | None) -> DeliveryPage:
    return DeliveryPage(items=[delivery_public(view) for view in views], next_cursor=cursor)


@router.get(
    "/processors/{code}/deliveries",
    response_model=DeliveryPage,
    summary="Notices to one processor, newest first",
)
async def list_processor_deliveries(
    code: str,
    ctx: OfficerDep,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    event_type: EventType | None = None,
    request_ref: uuid.UUID | None = None,
    acknowledged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    views, next_cursor = await deliveries.list_deliveries(
        ctx.session,
        crypto=ctx.crypto,
        processor_must_exist=True,
        code=code,
        status=status_,
        event_type=event_type,
        request_ref=request_ref,
        acknowledged=acknowledged,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return _page(views, next_cursor)


@router.post(
    "/processors/{code}/deliveries/replay",
    response_model=ReplayResult,
    summary="Send every dead notice to this processor again",
)
async def replay_dead_deliveries(
    code: str, ctx: OfficerDep, body: BulkReplay | None = None
) -> ReplayResult:
    count = await deliveries.replay_dead_deliveries(
        ctx.session,
        now=ctx.now,
        actor=ctx.actor,
        code=code,
        options=body or BulkReplay(),
    )
    return ReplayResult(replayed=count)


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    summary="Notices to every processor (held ones include processors not registered)",
)
async def list_deliveries(
    ctx: OfficerDep,
    processor: Annotated[str | None, Query(max_length=32)] = None,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    event_type: EventType | None = None,
    request_ref: uuid.UUID | None = None,
    acknowledged: bool | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    views, next_cursor = await deliveries.list_deliveries(
        ctx.session,
        crypto=ctx.crypto,
        code=processor,
        status=status_,
        event_type=event_type,
        request_ref=request_ref,
        acknowledged=acknowledged,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return _page(views, next_cursor)


@router.get(
    "/deliveries/awaiting-acknowledgement",
    response_model=list[DeliveryPublic],
    summary="Delivered notices not acknowledged after the follow-up period",
)
async def awaiting_acknowledgement(
    ctx: OfficerDep,
    processor: Annotated[str | None, Query(max_length=32)] = None,
    older_than_days: Annotated[
        float | None, Query(ge=0, le=365, description="Default: DSR_WEBHOOK_ACK_FOLLOW_UP_DAYS")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryPublic]:
    days = ctx.settings.webhook_ack_follow_up_days if older_than_days is None else older_than_days
    views = await deliveries.awaiting_acknowledgement(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        older_than=timedelta(days=days),
        code=processor,
        limit=limit,
    )
    return [delivery_public(view) for view in views]


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One notice with every attempt (status, latency, error, first 1 KB of the answer)",
)
async def get_delivery(delivery_id: uuid.UUID, ctx: OfficerDep) -> DeliveryDetail:
    view = await deliveries.get_delivery(ctx.session, crypto=ctx.crypto, delivery_id=delivery_id)
    return delivery_detail(view)


@router.post(
    "/deliveries/{delivery_id}/replay",
    response_model=DeliveryDetail,
    summary="Send a dead or delivered notice again (same webhook-id)",
)
async def replay_delivery(delivery_id: uuid.UUID, ctx: OfficerDep) -> DeliveryDetail:
    view = await deliveries.replay_delivery(
        ctx.session,
        crypto=ctx.crypto,
        now=ctx.now,
        actor=ctx.actor,
        delivery_id=delivery_id,
    )
    return delivery_detail(view)
