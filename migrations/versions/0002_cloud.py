"""ThermoWorks account linking and device sync (probes, credential state).

Placeholder in the chain until its feature fills it in.

Revision ID: 0002_cloud
Revises: 0001_seed
Create Date: 2026-11-27
"""

from collections.abc import Sequence

revision: str = "0002_cloud"
down_revision: str | None = "0001_seed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
