"""Account leases and bridge processes: several bridge processes share one PostgreSQL.

Revision ID: 0010_leases
Revises: 0009_api_tokens
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_leases"
down_revision: str | None = "0009_api_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_leases",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["thermoworks_credentials.user_id"],
            name=op.f("fk_account_leases_user_id_thermoworks_credentials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_account_leases")),
    )
    op.create_index(op.f("ix_account_leases_owner"), "account_leases", ["owner"])
    op.create_table(
        "bridge_processes",
        sa.Column("process_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process_id", name=op.f("pk_bridge_processes")),
    )


def downgrade() -> None:
    op.drop_table("bridge_processes")
    op.drop_index(op.f("ix_account_leases_owner"), table_name="account_leases")
    op.drop_table("account_leases")
