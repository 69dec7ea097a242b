"""Tables. Import every model module here so Alembic and the tests see the full metadata."""

from app.models.audit import AuditEntry
from app.models.base import metadata
from app.models.outbox import OutboxMessage
from app.models.processor import Processor, WebhookAcknowledgement, WebhookAttempt
from app.models.subject import SubjectIdentifier

__all__ = [
    "AuditEntry",
    "OutboxMessage",
    "Processor",
    "SubjectIdentifier",
    "WebhookAcknowledgement",
    "WebhookAttempt",
    "metadata",
]
