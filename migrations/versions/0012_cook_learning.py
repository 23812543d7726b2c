"""Cook calibration: what each session's cook teaches the next ones, nullable.

The probe that reached its target first, the target (and its unit), when, the pace of
its plain climb (actual / predicted time left) and of its climb after the stall
(the rate after it / the rate before it), and a sear (the pit raised late: the meat's
temperature then, and the time from then to the target).

Revision ID: 0012_cook_learning
Revises: 0011_cook_events
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_cook_learning"
down_revision: str | None = "0011_cook_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.add_column(sa.Column("cook_probe", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("cook_target", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cook_unit", sa.String(1), nullable=True))
        batch.add_column(sa.Column("cook_done_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cook_pace", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cook_climb_pace", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cook_sear_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cook_sear_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        for name in (
            "cook_sear_seconds",
            "cook_sear_at",
            "cook_climb_pace",
            "cook_pace",
            "cook_done_at",
            "cook_unit",
            "cook_target",
            "cook_probe",
        ):
            batch.drop_column(name)
