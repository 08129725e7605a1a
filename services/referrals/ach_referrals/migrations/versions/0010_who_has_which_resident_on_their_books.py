"""who has which resident on their books

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:45:00.666230
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Filled from ResidentLinked; links made before it existed come with `ach-identity relink`.
    op.create_table(
        "resident_link_replica",
        sa.Column("resident_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("partner_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("linked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("resident_id", "partner_id"),
    )


def downgrade() -> None:
    op.drop_table("resident_link_replica")
