"""inbox rows are pruned by age

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:12:31.293243
"""

from collections.abc import Sequence

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # now the backbone branch's (ach_events/migrations/backbone)


def downgrade() -> None:
    pass
