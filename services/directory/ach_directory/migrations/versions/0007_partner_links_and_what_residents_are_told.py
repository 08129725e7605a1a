"""partner links and what residents are told (organization name, phone, addresses)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partner_id", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("organization_name", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("phone", sa.String(length=100), nullable=False, server_default=""))
        # 0: written before partner links; the service summarises these again when it starts.
        batch_op.add_column(sa.Column("summary_format", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_index("ix_service_partner_id", ["partner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.drop_index("ix_service_partner_id")
        batch_op.drop_column("summary_format")
        batch_op.drop_column("phone")
        batch_op.drop_column("organization_name")
        batch_op.drop_column("partner_id")
