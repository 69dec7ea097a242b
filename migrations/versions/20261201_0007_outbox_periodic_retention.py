"""outbox: periodic runs claimed per (job, slot); payloads destroyed after delivery

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "periodic_run",
        sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("job", "slot", name=op.f("pk_periodic_run")),
    )
    op.alter_column("outbox_message", "payload", existing_type=sa.LargeBinary(), nullable=True)
    op.add_column(
        "outbox_message",
        sa.Column("payload_destroyed_at", sa.DateTime(timezone=True), nullable=True),
    )
    # The retention job looks for finished rows that still hold a payload.
    op.create_index(
        "ix_outbox_message_finished_payload",
        "outbox_message",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text(
            "payload IS NOT NULL AND status IN ('delivered', 'dead', 'cancelled')"
        ),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_message_finished_payload", table_name="outbox_message")
    op.drop_column("outbox_message", "payload_destroyed_at")
    # Destroyed payloads cannot come back: an empty value keeps the NOT NULL column valid.
    op.execute("UPDATE outbox_message SET payload = '' WHERE payload IS NULL")
    op.alter_column("outbox_message", "payload", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("periodic_run")
