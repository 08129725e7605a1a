"""outbox rows kafka refuses are set aside

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 11:08:01.671104
"""

from collections.abc import Sequence

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the backbone branch's (ach_events/migrations/backbone)


def downgrade() -> None:
    pass
