"""outbox and inbox: the events a service emits with its state, and those it has consumed

Revision ID: backbone_0001
Revises:
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from ach_events.migrations.adoption import add_missing_columns, add_missing_index, existing_tables
from alembic import op

revision: str = "backbone_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("backbone",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    tables = existing_tables()
    if "outbox_event" in tables:
        # Set aside: a row Kafka refuses, with its reason, so the rows behind it are published.
        add_missing_columns(
            "outbox_event",
            [sa.Column("set_aside_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)],
        )
    else:
        op.create_table(
            "outbox_event",
            sa.Column(
                "seq",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                autoincrement=True,
                nullable=False,
            ),
            sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
            sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
            sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
            sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
            sa.Column("headers", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column("payload", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
            sa.Column("published_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
            sa.Column("set_aside_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
            sa.PrimaryKeyConstraint("seq"),
            sa.UniqueConstraint("event_id"),
        )
    add_missing_index("outbox_event", "ix_outbox_event_published_at", ["published_at"])
    if "inbox_event" not in tables:
        op.create_table(
            "inbox_event",
            sa.Column("consumer", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
            sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
            sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
            sa.Column("partition", sa.Integer(), nullable=False),
            sa.Column("offset", sa.BigInteger(), nullable=False),
            sa.Column("processed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("consumer", "event_id"),
        )
    # Pruning deletes inbox rows by age.
    add_missing_index("inbox_event", "ix_inbox_event_processed_at", ["processed_at"])


def downgrade() -> None:
    op.drop_table("inbox_event")
    op.drop_table("outbox_event")
