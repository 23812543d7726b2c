"""MQTT publishing: the retained topics each bridge instance published (for cleanup).

Revision ID: 0003_mqtt
Revises: 0002_cloud
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_mqtt"
down_revision: str | None = "0002_cloud"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mqtt_publications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=512), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", TS, server_default=sa.func.now(), nullable=True),
        sa.Column("updated_at", TS, server_default=sa.func.now(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mqtt_publications")),
        sa.UniqueConstraint(
            "instance_id", "topic", name=op.f("uq_mqtt_publications_instance_id_topic")
        ),
    )
    op.create_index(
        op.f("ix_mqtt_publications_instance_id_owner"),
        "mqtt_publications",
        ["instance_id", "owner"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mqtt_publications_instance_id_owner"), table_name="mqtt_publications")
    op.drop_table("mqtt_publications")
