"""The daemon: the readings table.

Revision ID: 0004_readings
Revises: 0003_mqtt
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_readings"
down_revision: str | None = "0003_mqtt"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "readings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("probe", sa.SmallInteger(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_readings")),
        sa.UniqueConstraint(
            "device_id", "probe", "time", name=op.f("uq_readings_device_id_probe_time")
        ),
    )
    op.create_index(op.f("ix_readings_time"), "readings", ["time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_readings_time"), table_name="readings")
    op.drop_table("readings")
