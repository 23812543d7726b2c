"""Temperature alerts (arming state, history and outbox).

Placeholder in the chain until its feature fills it in.

Revision ID: 0005_alerts
Revises: 0004_readings
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0005_alerts"
down_revision: str | None = "0004_readings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
