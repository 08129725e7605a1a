"""history keeps reason codes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 11:14:32.851317
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referral_history", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "reason_code", sqlmodel.sql.sqltypes.AutoString(length=40), server_default="", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("referral_history", schema=None) as batch_op:
        batch_op.drop_column("reason_code")
