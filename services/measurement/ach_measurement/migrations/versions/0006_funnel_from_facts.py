"""the funnel is counted from the facts: deliveries become facts, the counters go

Deliveries made before this revision are not facts yet: `ach-measurement rebuild` counts them again
from the notification topic.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_fact",
        sa.Column("delivery_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    op.drop_table("funnel_counter")


def downgrade() -> None:
    op.create_table(
        "funnel_counter",
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("need_domain", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "need_domain"),
    )
    op.drop_table("delivery_fact")
