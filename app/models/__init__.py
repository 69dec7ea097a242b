"""Tables. Import every model module here so Alembic and the tests see the full metadata."""

from app.models.audit import AuditEntry
from app.models.base import metadata
from app.models.fulfilment import ProcessingRestriction, ProcessingSuspension
from app.models.outbox import OutboxMessage
from app.models.retention import RetainedRecord, RetentionKey
from app.models.subject import SubjectIdentifier

__all__ = [
    "AuditEntry",
    "OutboxMessage",
    "ProcessingRestriction",
    "ProcessingSuspension",
    "RetainedRecord",
    "RetentionKey",
    "SubjectIdentifier",
    "metadata",
]
