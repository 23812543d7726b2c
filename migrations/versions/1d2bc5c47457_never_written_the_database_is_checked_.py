"""never written: the database is checked first

Revision ID: 1d2bc5c47457
Revises: 0007_session_events
Create Date: 2026-12-04 18:13:58.857623
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '1d2bc5c47457'
down_revision: str | None = '0007_session_events'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
