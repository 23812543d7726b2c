"""ThermoWorks account linking and device sync: probes, device details, credential state.

Revision ID: 0002_cloud
Revises: 0001_seed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_cloud"
down_revision: str | None = "0001_seed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
DEVICE_COLUMNS = [
    "cloud_label",
    "renamed_by_user",
    "model",
    "device_type",
    "firmware",
    "battery",
    "signal_dbm",
    "last_seen",
    "raw",
]
CREDENTIAL_COLUMNS = [
    "provider",
    "tw_email",
    "uid",
    "account_id",
    "stored_password",
    "state",
    "state_reason",
    "state_changed_at",
]


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("cloud_label", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column("renamed_by_user", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("model", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("device_type", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("firmware", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("battery", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("signal_dbm", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("last_seen", TS, nullable=True))
        batch.add_column(sa.Column("raw", sa.JSON(), nullable=True))
    with op.batch_alter_table("thermoworks_credentials") as batch:
        batch.add_column(
            sa.Column(
                "provider", sa.String(length=20), server_default="thermoworks", nullable=False
            )
        )
        batch.add_column(sa.Column("tw_email", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("uid", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("account_id", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("stored_password", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("state", sa.String(length=20), server_default="ok", nullable=False)
        )
        batch.add_column(sa.Column("state_reason", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("state_changed_at", TS, nullable=True))
    op.create_table(
        "probes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.SmallInteger(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=1), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_time", TS, nullable=True),
        sa.Column("connected", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("alarm_high_enabled", sa.Boolean(), nullable=True),
        sa.Column("alarm_high_alarming", sa.Boolean(), nullable=True),
        sa.Column("alarm_high_value", sa.Float(), nullable=True),
        sa.Column("alarm_low_enabled", sa.Boolean(), nullable=True),
        sa.Column("alarm_low_alarming", sa.Boolean(), nullable=True),
        sa.Column("alarm_low_value", sa.Float(), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_probes_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probes")),
        sa.UniqueConstraint("device_id", "channel", name=op.f("uq_probes_device_id_channel")),
    )


def downgrade() -> None:
    op.drop_table("probes")
    with op.batch_alter_table("thermoworks_credentials") as batch:
        for name in reversed(CREDENTIAL_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("devices") as batch:
        for name in reversed(DEVICE_COLUMNS):
            batch.drop_column(name)
