"""partners: e-mail channel, controllers (Decree Art. 43(2)), follow-up of e-mailed notices

Revision ID: 0015
Revises: 0008 (written on 0007; re-chained when the branches were merged)
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0015"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "processor",
        sa.Column(
            "party",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default="processor",
        ),
    )
    op.add_column(
        "processor",
        sa.Column(
            "channel",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default="webhook",
        ),
    )
    op.add_column("processor", sa.Column("email_encrypted", sa.LargeBinary(), nullable=True))
    op.add_column(
        "processor",
        sa.Column("email_masked", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    )
    op.add_column(
        "processor",
        sa.Column(
            "language",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            nullable=False,
            server_default="en",
        ),
    )
    op.alter_column("processor", "webhook_url", existing_type=sa.String(length=2048), nullable=True)
    op.create_check_constraint(
        op.f("ck_processor_party"), "processor", "party IN ('processor', 'controller')"
    )
    op.create_check_constraint(
        op.f("ck_processor_channel"), "processor", "channel IN ('webhook', 'email')"
    )
    op.create_check_constraint(
        op.f("ck_processor_channel_address"),
        "processor",
        "(channel = 'webhook' AND webhook_url IS NOT NULL)"
        " OR (channel = 'email' AND email_encrypted IS NOT NULL)",
    )
    op.create_table(
        "partner_follow_up",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("processor_code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body_encrypted", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_partner_follow_up")),
    )
    op.create_index(
        op.f("ix_partner_follow_up_processor_code"),
        "partner_follow_up",
        ["processor_code"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_partner_follow_up_processor_code"), table_name="partner_follow_up")
    op.drop_table("partner_follow_up")
    op.drop_constraint(op.f("ck_processor_channel_address"), "processor", type_="check")
    op.drop_constraint(op.f("ck_processor_channel"), "processor", type_="check")
    op.drop_constraint(op.f("ck_processor_party"), "processor", type_="check")
    op.alter_column(
        "processor", "webhook_url", existing_type=sa.String(length=2048), nullable=False
    )
    for column in ("language", "email_masked", "email_encrypted", "channel", "party"):
        op.drop_column("processor", column)
