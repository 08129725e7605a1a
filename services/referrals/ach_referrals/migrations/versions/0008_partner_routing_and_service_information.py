"""partner routing: the directory replica knows which partner runs a service, and what residents
are told of it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("directory_service_replica", schema=None) as batch_op:
        # Empty until the directory publishes the service again (it does at its own upgrade):
        # meanwhile a replica row names no partner, and no referral goes to it.
        batch_op.add_column(sa.Column("partner_id", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("name", sa.String(length=500), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("organization_name", sa.String(length=500), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("phone", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("address", sa.String(length=500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("directory_service_replica", schema=None) as batch_op:
        for column in ("address", "phone", "organization_name", "name", "partner_id"):
            batch_op.drop_column(column)
