"""the Wellness Fund ledger: accounts with running totals, a hash-chained journal, entries, outcome payments

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 15:47:25.789805
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
        "ledger_account",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("partner_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("overdraft_allowed", sa.Boolean(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_account_partner_id"), ["partner_id"], unique=False)

    op.create_table(
        "ledger_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ledger_transaction",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("resolves_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("previous_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("resolves_id"),
        sa.UniqueConstraint("sequence"),
    )
    with op.batch_alter_table("ledger_transaction", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_transaction_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_transaction_kind"), ["kind"], unique=False)
        batch_op.create_index("ix_ledger_transaction_pending_expiry", ["phase", "expires_at"], unique=False)

    op.create_table(
        "outcome_payment",
        sa.Column("referral_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("target_partner_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("need_domain", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("internal", sa.Boolean(), nullable=False),
        sa.Column("pending_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("paid_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("earned_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("referral_id"),
    )
    with op.batch_alter_table("outcome_payment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outcome_payment_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_outcome_payment_target_partner_id"), ["target_partner_id"], unique=False
        )

    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("side", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("phase", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_account.id"],
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transaction.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_entry", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_entry_account_time", ["account_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_entry_transaction_id"), ["transaction_id"], unique=False)

    op.create_table(
        "disbursement_request",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("body_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("payee_partner_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("cost_type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("need_domain", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("geography", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("pending_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("posted_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("disbursement_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_disbursement_request_payee_partner_id"), ["payee_partner_id"])
        batch_op.create_index(batch_op.f("ix_disbursement_request_cost_type"), ["cost_type"])
        batch_op.create_index(batch_op.f("ix_disbursement_request_status"), ["status"])
    op.create_table(
        "disbursement_approval",
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("approver_partner_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("approved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["disbursement_request.id"]),
        sa.PrimaryKeyConstraint("request_id", "approver_partner_id"),
    )

    # The journal starts at the genesis hash.
    op.bulk_insert(
        sa.table("ledger_chain_head", sa.column("id"), sa.column("sequence"), sa.column("hash")),
        [{"id": 1, "sequence": 0, "hash": "0" * 64}],
    )
    # The skeleton's transfers paid from an account no money was ever put in: kept as they were,
    # read-only, beside the ledger (not carried into a journal whose balances they would break).
    op.rename_table("transfer", "legacy_transfer")
    op.rename_table("account", "legacy_account")


def downgrade() -> None:
    op.rename_table("legacy_account", "account")
    op.rename_table("legacy_transfer", "transfer")
    op.drop_table("disbursement_approval")
    op.drop_table("disbursement_request")
    op.drop_table("ledger_entry")
    op.drop_table("outcome_payment")
    op.drop_table("ledger_transaction")
    op.drop_table("ledger_chain_head")
    op.drop_table("ledger_account")
