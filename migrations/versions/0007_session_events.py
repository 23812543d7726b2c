"""Session events: when each ended session's event was published (the sessions outbox).

Sessions that ended before this revision count as published: their events are not
sent after an upgrade.

Revision ID: 0007_session_events
Revises: 0006_sessions
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_session_events"
down_revision: str | None = "0006_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.add_column(sa.Column("end_published_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        op.f("ix_grilling_sessions_end_published_at_id"),
        "grilling_sessions",
        ["end_published_at", "id"],
    )
    op.execute(
        "UPDATE grilling_sessions SET end_published_at = COALESCE(end_time, updated_at, start_time)"
        " WHERE status IN ('completed', 'cancelled')"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_grilling_sessions_end_published_at_id"), table_name="grilling_sessions")
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.drop_column("end_published_at")
