"""who has which resident on their books

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:45:00.666230
"""

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the resident replica branch's (ach_events/migrations/resident_replica)


def downgrade() -> None:
    pass
