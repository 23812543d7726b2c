"""The cook method each probe of a session was cooked with (auto, reverse_sear), beside its
cook figures, so that ``session show`` and the export say it after the target is gone.

Nullable: NULL on the rows written before this revision (not recorded).

Revision ID: 0014_session_cook_method
Revises: 0013_cook_method
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_session_cook_method"
down_revision: str | None = "0013_cook_method"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("session_cook_probes") as batch:
        batch.add_column(sa.Column("cook_method", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("session_cook_probes") as batch:
        batch.drop_column("cook_method")
