"""The composition root of the worker: every domain's handlers, periodic jobs and context.

The loop itself is ``app/outbox/worker.py``; this module only knows what it runs.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from app.audit import trail
from app.clock import Clock
from app.config import Settings
from app.crypto import Crypto
from app.datamap.schema import DataMap
from app.db import Database
from app.fulfilment import access, correction, deletion, handoff, plan, suspension
from app.notifications import messages as notifications
from app.outbox import retention
from app.outbox.jobs import PeriodicJob, Registry, WorkerContext
from app.outbox.retry import FULFILMENT_RETRY, WEBHOOK_RETRY
from app.requests import jobs, sla
from app.retention import store
from app.subjects import verification
from app.webhooks import delivery, email_channel
from app.webhooks.delivery import WebhookWorkerState


def build_registry() -> Registry:
    """Every handler and periodic job the worker runs. Add new kinds here."""
    # A one-time code is useless once sent: its payload goes when the message finishes.
    keep_payload = {f"notification:{verification.CODE_TEMPLATE}": timedelta(0)}
    return Registry(
        handlers={
            "notification": notifications.handle_notification,
            f"job:{access.JOB_TOPIC}": access.handle_fulfil_access,
            f"job:{deletion.JOB_TOPIC}": deletion.handle_fulfil_deletion,
            f"job:{correction.JOB_TOPIC}": correction.handle_fulfil_correction,
            f"job:{suspension.SUSPENSION_TOPIC}": suspension.handle_fulfil_suspension,
            f"job:{suspension.WITHDRAWAL_TOPIC}": suspension.handle_fulfil_consent_withdrawal,
            f"job:{plan.APPLY_TOPIC}": plan.handle_apply,
            f"job:{jobs.AUTO_REVIEW_TOPIC}": jobs.handle_auto_review,
            "webhook": delivery.deliver_webhook,
        },
        retry={"job": FULFILMENT_RETRY, "webhook": WEBHOOK_RETRY},
        keep_payload=keep_payload,
        on_dead={"job": jobs.on_job_dead, "webhook": delivery.on_webhook_dead},
        recorders={"webhook": delivery.record_delivered_attempts},
        periodic=[
            PeriodicJob(
                name="webhooks-held-alert",
                every=timedelta(minutes=10),
                run=delivery.alert_held_notices,
            ),
            PeriodicJob(
                name="partner.follow_up",
                every=timedelta(hours=1),
                run=email_channel.follow_up_partners,
            ),
            trail.SEAL_JOB,
            *sla.JOBS,
            access.purge_job(),
            store.PURGE_JOB,
            jobs.PURGE_IDEMPOTENCY,
            PeriodicJob(
                "verifications.purge", timedelta(hours=1), verification.purge_verifications
            ),
            retention.destroy_payloads_job(keep_payload),
        ],
    )


def build_context(
    *,
    settings: Settings,
    db: Database,
    crypto: Crypto,
    clock: Clock,
    http: httpx.AsyncClient,
    datamap: DataMap,
) -> WorkerContext:
    """The context every handler gets: the same in `dsr serve`, `dsr worker` and the tests."""
    return WorkerContext(
        settings=settings,
        db=db,
        crypto=crypto,
        clock=clock,
        http=http,
        datamap=datamap,
        access_report_ready=handoff.access_report_ready(crypto=crypto, settings=settings),
        webhooks=WebhookWorkerState(),
    )
