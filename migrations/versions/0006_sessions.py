"""Grilling sessions (per-probe statistics, tracker state).

Placeholder in the chain until its feature fills it in.

Revision ID: 0006_sessions
Revises: 0005_alerts
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0006_sessions"
down_revision: str | None = "0005_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
