"""Tables. Import every model module here so Alembic and the tests see the full metadata."""

from app.models.audit import AuditEntry
from app.models.base import metadata
from app.models.fulfilment import ProcessingRestriction, ProcessingSuspension
from app.models.outbox import OutboxMessage, PeriodicRun
from app.models.processor import Processor, WebhookAcknowledgement, WebhookAttempt
from app.models.reports import AccessReportRecord
from app.models.requests import DsrObjection, DsrRequest, DsrRequestEvent, IdempotencyRecord
from app.models.retention import RetainedRecord, RetentionKey
from app.models.subject import SubjectIdentifier
from app.models.verification import Verification

__all__ = [
    "AccessReportRecord",
    "AuditEntry",
    "DsrObjection",
    "DsrRequest",
    "DsrRequestEvent",
    "IdempotencyRecord",
    "OutboxMessage",
    "PeriodicRun",
    "ProcessingRestriction",
    "ProcessingSuspension",
    "Processor",
    "RetainedRecord",
    "RetentionKey",
    "SubjectIdentifier",
    "Verification",
    "WebhookAcknowledgement",
    "WebhookAttempt",
    "metadata",
]
