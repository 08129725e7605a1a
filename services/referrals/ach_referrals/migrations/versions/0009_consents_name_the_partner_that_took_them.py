"""consents name the partner that took them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:30:15.313341
"""

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the resident replica branch's (ach_events/migrations/resident_replica)


def downgrade() -> None:
    pass
