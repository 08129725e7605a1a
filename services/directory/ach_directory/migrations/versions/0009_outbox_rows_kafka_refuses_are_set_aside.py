"""outbox rows kafka refuses are set aside

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 11:07:51.493766
"""

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the backbone branch's (ach_events/migrations/backbone)


def downgrade() -> None:
    pass
