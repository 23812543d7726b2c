"""Cook predictions: each session's stall (start, end, length), nullable.

Revision ID: 0008_cook
Revises: 0007_session_events
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_cook"
down_revision: str | None = "0007_session_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.add_column(sa.Column("stall_start", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stall_end", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stall_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.drop_column("stall_seconds")
        batch.drop_column("stall_end")
        batch.drop_column("stall_start")
