"""The cook method a person declares for a probe (auto, reverse_sear), on its target alert.

Nullable: NULL is auto (nothing declared).

Revision ID: 0013_cook_method
Revises: 0012_cook_learning
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_cook_method"
down_revision: str | None = "0012_cook_learning"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("temperature_alerts") as batch:
        batch.add_column(sa.Column("cook_method", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("temperature_alerts") as batch:
        batch.drop_column("cook_method")
