"""The daemon (readings).

Placeholder in the chain until its feature fills it in.

Revision ID: 0004_readings
Revises: 0003_mqtt
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0004_readings"
down_revision: str | None = "0003_mqtt"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
