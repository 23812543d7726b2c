"""Cook events and figures: the events kept until the broker acknowledged them, and each
session's probes with a target with their latest estimate, state and stall.

``cook_events`` is the cook's outbox, like ``alert_history`` for firings: an event waits
there while the broker is away or the bridge restarts, and goes out later with the same
``event_id``. ``session_cook_probes`` is what ``session show`` and the export print.

Revision ID: 0011_cook_events
Revises: 0010_leases
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_cook_events"
down_revision: str | None = "0010_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cook_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(50), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=True),
        sa.Column("probe", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(1), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stall_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stall_seconds", sa.Float(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=True
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_cook_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["grilling_sessions.id"],
            name=op.f("fk_cook_events_session_id_grilling_sessions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cook_events")),
    )
    op.create_index(op.f("ix_cook_events_published_at_id"), "cook_events", ["published_at", "id"])
    op.create_index(op.f("ix_cook_events_user_id_at"), "cook_events", ["user_id", "at"])
    op.create_table(
        "session_cook_probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("probe", sa.SmallInteger(), nullable=False),
        sa.Column("unit", sa.String(1), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        *(
            sa.Column(name, sa.DateTime(timezone=True), nullable=True)
            for name in ("done_at", "done_low", "done_high", "ready_at", "stall_start", "stall_end")
        ),
        sa.Column("stall_seconds", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["grilling_sessions.id"],
            name=op.f("fk_session_cook_probes_session_id_grilling_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_cook_probes")),
        sa.UniqueConstraint(
            "session_id", "probe", name=op.f("uq_session_cook_probes_session_id_probe")
        ),
    )


def downgrade() -> None:
    op.drop_table("session_cook_probes")
    op.drop_index(op.f("ix_cook_events_user_id_at"), table_name="cook_events")
    op.drop_index(op.f("ix_cook_events_published_at_id"), table_name="cook_events")
    op.drop_table("cook_events")
