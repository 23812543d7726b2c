"""MQTT publishing (what was published, for cleanup).

Placeholder in the chain until its feature fills it in.

Revision ID: 0003_mqtt
Revises: 0002_cloud
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0003_mqtt"
down_revision: str | None = "0002_cloud"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
