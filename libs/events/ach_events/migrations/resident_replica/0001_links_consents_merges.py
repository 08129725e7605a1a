"""the resident replica: who has which resident on their books, residents' consents, merges

Revision ID: resident_replica_0001
Revises:
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from ach_events.migrations.adoption import add_missing_columns, add_missing_index, existing_tables
from alembic import op

revision: str = "resident_replica_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("resident_replica",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tables = existing_tables()
    # Consents replicated before the partner that took each was recorded are kept as from nobody in
    # particular: the identity service, which decides every share, has the partner for each.
    recorded_by = sa.Column(
        "recorded_by_partner_id",
        sqlmodel.sql.sqltypes.AutoString(length=64),
        server_default="",
        nullable=False,
    )
    if "consent_replica" in tables:
        add_missing_columns("consent_replica", [recorded_by])
    else:
        op.create_table(
            "consent_replica",
            sa.Column("consent_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
            sa.Column("resident_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.Column("need_domains", sa.JSON(), nullable=False),
            sa.Column("partner_ids", sa.JSON(), nullable=False),
            sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
            sa.Column("given_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
            sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
            sa.Column("version", sa.Integer(), nullable=False),
            recorded_by,
            sa.PrimaryKeyConstraint("consent_id"),
        )
    add_missing_index("consent_replica", "ix_consent_replica_resident_id", ["resident_id"])
    if "resident_alias" not in tables:
        op.create_table(
            "resident_alias",
            sa.Column("merged_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.Column("survivor_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.PrimaryKeyConstraint("merged_id"),
        )
    add_missing_index("resident_alias", "ix_resident_alias_survivor_id", ["survivor_id"])
    if "resident_link_replica" not in tables:
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
    op.drop_table("resident_alias")
    op.drop_table("consent_replica")
