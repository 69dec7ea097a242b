"""console: request owners, internal notes, overdue-alert bookkeeping

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dsr_request",
        sa.Column("assignee", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    )
    op.add_column(
        "dsr_request", sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "dsr_request", sa.Column("overdue_alerted_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(op.f("ix_dsr_request_assignee"), "dsr_request", ["assignee"], unique=False)
    op.create_table(
        "dsr_request_note",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("text_encrypted", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["dsr_request.id"],
            name=op.f("fk_dsr_request_note_request_id_dsr_request"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dsr_request_note")),
    )
    op.create_index(
        "ix_dsr_request_note_request", "dsr_request_note", ["request_id", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dsr_request_note_request", table_name="dsr_request_note")
    op.drop_table("dsr_request_note")
    op.drop_index(op.f("ix_dsr_request_assignee"), table_name="dsr_request")
    op.drop_column("dsr_request", "overdue_alerted_at")
    op.drop_column("dsr_request", "assigned_at")
    op.drop_column("dsr_request", "assignee")
