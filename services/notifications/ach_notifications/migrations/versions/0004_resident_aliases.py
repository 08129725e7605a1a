"""resident aliases (merged resident ids), so a merged-away id finds the survivor's contact preference

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resident_alias",
        sa.Column("merged_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("survivor_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.PrimaryKeyConstraint("merged_id"),
    )
    with op.batch_alter_table("resident_alias", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resident_alias_survivor_id"), ["survivor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resident_alias", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resident_alias_survivor_id"))
    op.drop_table("resident_alias")
