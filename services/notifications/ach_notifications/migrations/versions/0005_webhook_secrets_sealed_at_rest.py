"""webhook secrets sealed at rest (room for the sealed form)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The service seals the secrets stored before this when it starts (seal_stored_secrets).
    with op.batch_alter_table("partner_channel", schema=None) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=100),
            type_=sa.String(length=400),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("partner_channel", schema=None) as batch_op:
        batch_op.alter_column(
            "secret",
            existing_type=sa.String(length=400),
            type_=sa.String(length=100),
            existing_nullable=False,
        )
