"""verifications: one-time codes (also the rate-limit state)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "verification",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("destination_index", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("destination_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("code_mac", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("client_mac", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("locale", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("wrong_attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('sms', 'email')", name=op.f("ck_verification_channel")),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'dead')", name=op.f("ck_verification_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification")),
    )
    op.create_index(
        "ix_verification_client_created", "verification", ["client_mac", "created_at"], unique=False
    )
    op.create_index(
        op.f("ix_verification_created_at"), "verification", ["created_at"], unique=False
    )
    op.create_index(
        "ix_verification_destination_created",
        "verification",
        ["destination_index", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_verification_destination_created", table_name="verification")
    op.drop_index(op.f("ix_verification_created_at"), table_name="verification")
    op.drop_index("ix_verification_client_created", table_name="verification")
    op.drop_table("verification")
