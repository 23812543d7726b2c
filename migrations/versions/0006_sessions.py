"""Grilling sessions: unit, generated-name flag and end reason on grilling_sessions (the
seed's columns untouched), one active session per device, per-probe statistics, and the
tracker's per-device state.

Revision ID: 0006_sessions
Revises: 0005_alerts
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_sessions"
down_revision: str | None = "0005_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.add_column(sa.Column("temperature_unit", sa.String(length=1), nullable=True))
        batch.add_column(
            sa.Column("auto_named", sa.Boolean(), server_default=sa.false(), nullable=True)
        )
        batch.add_column(sa.Column("end_reason", sa.String(length=20), nullable=True))
    op.create_index(
        "uq_grilling_sessions_active_device",
        "grilling_sessions",
        ["device_id"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_index(
        op.f("ix_grilling_sessions_device_id_start_time"),
        "grilling_sessions",
        ["device_id", "start_time"],
    )
    op.create_index(
        op.f("ix_grilling_sessions_user_id_start_time"),
        "grilling_sessions",
        ["user_id", "start_time"],
    )
    op.create_table(
        "grilling_session_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("probe", sa.SmallInteger(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("min_temperature", sa.Float(), nullable=True),
        sa.Column("max_temperature", sa.Float(), nullable=True),
        sa.Column("avg_temperature", sa.Float(), nullable=True),
        sa.Column("weighted_seconds", sa.Float(), nullable=False),
        sa.Column("first_time", TS, nullable=True),
        sa.Column("last_time", TS, nullable=True),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["grilling_sessions.id"],
            name=op.f("fk_grilling_session_probes_session_id_grilling_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grilling_session_probes")),
        sa.UniqueConstraint(
            "session_id", "probe", name=op.f("uq_grilling_session_probes_session_id_probe")
        ),
    )
    op.create_table(
        "session_tracker_states",
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_session_tracker_states")),
    )


def downgrade() -> None:
    op.drop_table("session_tracker_states")
    op.drop_table("grilling_session_probes")
    op.drop_index(op.f("ix_grilling_sessions_user_id_start_time"), table_name="grilling_sessions")
    op.drop_index(op.f("ix_grilling_sessions_device_id_start_time"), table_name="grilling_sessions")
    op.drop_index("uq_grilling_sessions_active_device", table_name="grilling_sessions")
    with op.batch_alter_table("grilling_sessions") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("auto_named")
        batch.drop_column("temperature_unit")
