"""Temperature alerts: the engine's arming state, and the history that is also the outbox.

Revision ID: 0005_alerts
Revises: 0004_readings
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_alerts"
down_revision: str | None = "0004_readings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("alert_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rule_key", sa.String(length=255), nullable=False),
        sa.Column("arm", sa.String(length=10), nullable=False),
        sa.Column("low_arm", sa.String(length=10), nullable=True),
        sa.Column("last_fired", TS, nullable=True),
        sa.Column("changed_at", TS, nullable=True),
        sa.Column("window_reset_at", TS, nullable=True),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=True),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alert_states")),
    )
    op.create_table(
        "alert_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("probe", sa.SmallInteger(), nullable=False),
        sa.Column("alert_type", sa.String(length=20), nullable=False),
        sa.Column("event_type", sa.String(length=20), nullable=False),
        sa.Column("alert_name", sa.String(length=100), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("change", sa.Float(), nullable=True),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_alert_history_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_history")),
    )
    op.create_index(
        op.f("ix_alert_history_user_id_fired_at"), "alert_history", ["user_id", "fired_at"]
    )
    op.create_index(
        op.f("ix_alert_history_published_at_id"), "alert_history", ["published_at", "id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_history_published_at_id"), table_name="alert_history")
    op.drop_index(op.f("ix_alert_history_user_id_fired_at"), table_name="alert_history")
    op.drop_table("alert_history")
    op.drop_table("alert_states")
