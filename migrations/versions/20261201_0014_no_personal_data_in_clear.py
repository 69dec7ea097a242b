"""no personal data in clear: partner replies kept as size and digest; audit addresses sealed

``webhook_attempt.response_excerpt`` (the first 1 KB of every partner reply, in clear: a partner
echoing a notice left corrected values there) is replaced by ``response_bytes`` and
``response_digest`` (a keyed hash written by the worker); the excerpts already stored are
dropped, keeping their size. ``audit_entry`` gains ``client_ip_encrypted``; new entries keep a
keyed hash in ``client_ip``. Entries sealed before this revision keep the address they were
sealed with: rewriting them would break the hash chain.

Revision ID: 0014
Revises: 0015 (written on 0007; re-chained when the branches were merged)
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_attempt", sa.Column("response_bytes", sa.Integer(), nullable=True))
    op.add_column(
        "webhook_attempt",
        sa.Column("response_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    )
    op.execute("UPDATE webhook_attempt SET response_bytes = octet_length(response_excerpt)")
    op.drop_column("webhook_attempt", "response_excerpt")
    op.add_column("audit_entry", sa.Column("client_ip_encrypted", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_entry", "client_ip_encrypted")
    op.add_column(
        "webhook_attempt",
        sa.Column("response_excerpt", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True),
    )
    op.drop_column("webhook_attempt", "response_digest")
    op.drop_column("webhook_attempt", "response_bytes")
