"""consents name the partner that took them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:30:15.313341
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Consents replicated before are kept as from nobody in particular: the identity service, which
    # decides every share, has the partner for each of them.
    with op.batch_alter_table("consent_replica", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "recorded_by_partner_id",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                server_default="",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_replica", schema=None) as batch_op:
        batch_op.drop_column("recorded_by_partner_id")
