"""indexes for the staff queue and the outbox claim at ten million rows

Every staff filter reads its page from an index in (due_at, id) order, so a page (first or
deep, through the keyset cursor) reads about ``limit`` index entries whatever the table holds:
by status, by type, overdue (open requests only: a partial index), by fulfilment state, by
received time (its own range index), and by subject (the GIN index on subject_indexes already
serves phone / e-mail search through the blind index). The outbox claim reads pending rows only
(a partial index), so delivered history does not slow it. And a statement trigger notifies
``dsr_outbox`` when pending messages are queued, so idle workers wake at the commit.

Revision ID: 0012
Revises: 0016 (written on 0006; re-chained when the branches were merged)
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status IN ('received', 'in_review', 'in_progress')")


NOTIFY_FUNCTION = """
CREATE FUNCTION dsr_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM added WHERE status = 'pending') THEN
        PERFORM pg_notify('dsr_outbox', '');
    END IF;
    RETURN NULL;
END
$$
"""
# Once per INSERT statement, in its transaction: delivered to listeners when it commits.
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_message_notify AFTER INSERT ON outbox_message
REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION dsr_outbox_notify()
"""


def upgrade() -> None:
    # Idle workers LISTEN on dsr_outbox (app/outbox/wakeup.py).
    op.execute(NOTIFY_FUNCTION)
    op.execute(NOTIFY_TRIGGER)
    op.create_index("ix_dsr_request_status_due", "dsr_request", ["status", "due_at", "id"])
    op.create_index("ix_dsr_request_type_due", "dsr_request", ["type", "due_at", "id"])
    op.create_index(
        "ix_dsr_request_open_due", "dsr_request", ["due_at", "id"], postgresql_where=OPEN
    )
    op.create_index(
        "ix_dsr_request_fulfilment_due",
        "dsr_request",
        ["fulfilment_state", "due_at", "id"],
        postgresql_where=sa.text("fulfilment_state IS NOT NULL"),
    )
    op.create_index("ix_dsr_request_received", "dsr_request", ["received_at", "id"])
    # Superseded by the (status, due_at, id) index above.
    op.drop_index("ix_dsr_request_status", table_name="dsr_request")
    op.create_index(
        "ix_outbox_message_pending",
        "outbox_message",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # Stats and operators read pending, held and dead rows, never the delivered history.
    op.create_index(
        "ix_outbox_message_unfinished",
        "outbox_message",
        ["status", "kind"],
        postgresql_where=sa.text("status NOT IN ('delivered', 'cancelled')"),
    )
    op.drop_index("ix_outbox_message_due", table_name="outbox_message")


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_message_notify ON outbox_message")
    op.execute("DROP FUNCTION dsr_outbox_notify()")
    op.create_index("ix_outbox_message_due", "outbox_message", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_message_unfinished", table_name="outbox_message")
    op.drop_index("ix_outbox_message_pending", table_name="outbox_message")
    op.create_index("ix_dsr_request_status", "dsr_request", ["status"])
    op.drop_index("ix_dsr_request_received", table_name="dsr_request")
    op.drop_index("ix_dsr_request_fulfilment_due", table_name="dsr_request")
    op.drop_index("ix_dsr_request_open_due", table_name="dsr_request")
    op.drop_index("ix_dsr_request_type_due", table_name="dsr_request")
    op.drop_index("ix_dsr_request_status_due", table_name="dsr_request")
