"""facts for measures: screenings, needs, referrals, their status changes and re-routes; imported
population indicator values

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 20:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_id = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    # Fact tables carry no secondary index: they are read whole, and rebuilt beside the live ones.
    with op.batch_alter_table("screening_demographics_fact", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_demographics_fact_resident_id"))
    op.create_table(
        "screening_fact",
        sa.Column("screening_id", _id(length=36), nullable=False),
        sa.Column("resident_id", _id(length=200), nullable=False),
        sa.Column("partner_id", _id(length=200), nullable=False),
        sa.Column("site_id", _id(length=200), nullable=False),
        sa.Column("screened_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("positive_domains", sa.JSON(), nullable=False),
        sa.Column("negative_domains", sa.JSON(), nullable=False),
        sa.Column("consented", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("screening_id"),
    )
    op.create_table(
        "need_fact",
        sa.Column("need_id", _id(length=36), nullable=False),
        sa.Column("screening_id", _id(length=36), nullable=False),
        sa.Column("resident_id", _id(length=200), nullable=False),
        sa.Column("need_domain", _id(length=100), nullable=False),
        sa.Column("partner_id", _id(length=200), nullable=False),
        sa.Column("identified_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("consented", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("need_id"),
    )
    op.create_table(
        "referral_fact",
        sa.Column("referral_id", _id(length=36), nullable=False),
        sa.Column("resident_id", _id(length=200), nullable=False),
        sa.Column("need_id", _id(length=36), nullable=False),
        sa.Column("screening_id", _id(length=36), nullable=False),
        sa.Column("need_domain", _id(length=100), nullable=False),
        sa.Column("source_partner_id", _id(length=200), nullable=False),
        sa.Column("target_partner_id", _id(length=200), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("informational", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
    )
    op.create_table(
        "referral_change_fact",
        sa.Column("referral_id", _id(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("to_status", _id(length=30), nullable=False),
        sa.Column("outcome", _id(length=30), nullable=False),
        sa.Column("reason_code", _id(length=40), nullable=False),
        sa.Column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("target_partner_id", _id(length=200), nullable=False),
        sa.PrimaryKeyConstraint("referral_id", "sequence"),
    )
    op.create_table(
        "referral_reroute_fact",
        sa.Column("referral_id", _id(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("reason_code", _id(length=40), nullable=False),
        sa.Column("rerouted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("from_partner_id", _id(length=200), nullable=False),
        sa.Column("to_partner_id", _id(length=200), nullable=False),
        sa.PrimaryKeyConstraint("referral_id", "sequence"),
    )
    op.create_table(
        "indicator_value",
        sa.Column("indicator", _id(length=80), nullable=False),
        sa.Column("geography", _id(length=100), nullable=False),
        sa.Column("period", _id(length=10), nullable=False),
        sa.Column("group", _id(length=60), nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("numerator", sa.Float(), nullable=True),
        sa.Column("denominator", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("source", _id(length=200), nullable=False),
        sa.Column("imported_from", _id(length=200), nullable=False),
        sa.Column("imported_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("indicator", "geography", "period", "group"),
    )
    op.create_table(
        "rebuild_progress",
        sa.Column("topic", _id(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.create_table(
        "projection_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    with op.batch_alter_table("screening_demographics_fact", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_screening_demographics_fact_resident_id"), ["resident_id"], unique=False
        )
    op.drop_table("projection_generation")
    op.drop_table("rebuild_progress")
    op.drop_table("indicator_value")
    for table in (
        "referral_reroute_fact",
        "referral_change_fact",
        "referral_fact",
        "need_fact",
        "screening_fact",
    ):
        op.drop_table(table)
