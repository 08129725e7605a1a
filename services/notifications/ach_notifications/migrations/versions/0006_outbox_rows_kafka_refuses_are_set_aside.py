"""outbox rows kafka refuses are set aside

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:08:06.925311
"""

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the backbone branch's (ach_events/migrations/backbone)


def downgrade() -> None:
    pass
