"""outbox rows kafka refuses are set aside

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 11:07:46.473270
"""

from collections.abc import Sequence

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the backbone branch's (ach_events/migrations/backbone)


def downgrade() -> None:
    pass
