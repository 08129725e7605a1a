"""consents name the partner that took them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:30:20.512420
"""

from collections.abc import Sequence

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the resident replica branch's (ach_events/migrations/resident_replica)


def downgrade() -> None:
    pass
