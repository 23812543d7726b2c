"""The seed's five tables: users, devices, temperature_alerts, grilling_sessions,
thermoworks_credentials.

Revision ID: 0001_seed
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_seed"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=120), nullable=False),
        sa.Column("password_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=True),
        sa.Column(
            "failed_login_attempts", sa.Integer(), server_default=sa.text("0"), nullable=True
        ),
        sa.Column("last_failed_login", TS, nullable=True),
        sa.Column("is_locked", sa.Boolean(), server_default=sa.false(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("nickname", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="offline", nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_devices_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("device_id", name=op.f("uq_devices_device_id")),
    )
    op.create_table(
        "grilling_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("session_type", sa.String(length=20), server_default="auto", nullable=True),
        sa.Column("status", sa.String(length=20), server_default="active", nullable=True),
        sa.Column("start_time", TS, server_default=sa.func.now(), nullable=False),
        sa.Column("end_time", TS, nullable=True),
        sa.Column("max_temperature", sa.Float(), nullable=True),
        sa.Column("min_temperature", sa.Float(), nullable=True),
        sa.Column("avg_temperature", sa.Float(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_grilling_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grilling_sessions")),
    )
    op.create_table(
        "temperature_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=50), nullable=False),
        sa.Column("probe_id", sa.String(length=50), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("alert_type", sa.String(length=20), nullable=False),
        sa.Column("target_temperature", sa.Float(), nullable=True),
        sa.Column("min_temperature", sa.Float(), nullable=True),
        sa.Column("max_temperature", sa.Float(), nullable=True),
        sa.Column("threshold_value", sa.Float(), nullable=True),
        sa.Column("temperature_unit", sa.String(length=5), server_default="F", nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=True),
        sa.Column("last_triggered", TS, nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_temperature_alerts_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_temperature_alerts")),
    )
    op.create_table(
        "thermoworks_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_thermoworks_credentials_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thermoworks_credentials")),
        sa.UniqueConstraint("user_id", name=op.f("uq_thermoworks_credentials_user_id")),
    )


def downgrade() -> None:
    op.drop_table("thermoworks_credentials")
    op.drop_table("temperature_alerts")
    op.drop_table("grilling_sessions")
    op.drop_table("devices")
    op.drop_table("users")
