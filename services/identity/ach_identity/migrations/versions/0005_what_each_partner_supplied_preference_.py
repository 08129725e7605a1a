"""what each partner supplied, preference owner, referral source

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:28:44.722772
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUPPLIED = (
    ("given_name", 200),
    ("family_name", 200),
    ("birth_date", 10),
    ("phone", 40),
    ("preferred_language", 35),
    ("postal_code", 20),
    ("email", 320),
)


def _text(name: str, length: int) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), server_default="", nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("referral_replica", schema=None) as batch_op:
        batch_op.add_column(_text("source_partner_id", 100))
    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.add_column(_text("preference_partner_id", 64))
    with op.batch_alter_table("resident_link", schema=None) as batch_op:
        for name, length in SUPPLIED:
            batch_op.add_column(_text(name, length))

    # What each partner supplied was not kept before. The partner that first linked a resident
    # supplied the record as it stands; a partner matched later evidently knew the name and birth
    # date, and is given nothing more (what it supplied beyond them is not known).
    first_link = (
        "SELECT partner_id FROM resident_link AS f WHERE f.resident_id = resident_link.resident_id"
        " ORDER BY f.created_at, f.partner_id LIMIT 1"
    )
    op.execute(
        "UPDATE resident_link SET"
        " given_name = (SELECT r.given_name FROM resident AS r WHERE r.id = resident_link.resident_id),"
        " family_name = (SELECT r.family_name FROM resident AS r WHERE r.id = resident_link.resident_id),"
        " birth_date = (SELECT r.birth_date FROM resident AS r WHERE r.id = resident_link.resident_id)"
        " WHERE EXISTS (SELECT 1 FROM resident AS r WHERE r.id = resident_link.resident_id)"
    )
    for name in ("phone", "preferred_language", "postal_code", "email"):
        op.execute(
            f"UPDATE resident_link SET {name} = (SELECT r.{name} FROM resident AS r"
            f" WHERE r.id = resident_link.resident_id) WHERE partner_id = ({first_link})"
            " AND EXISTS (SELECT 1 FROM resident AS r WHERE r.id = resident_link.resident_id)"
        )
    # The contact preference belongs to the partner that supplied the record.
    op.execute(
        "UPDATE resident SET preference_partner_id = (SELECT f.partner_id FROM resident_link AS f"
        " WHERE f.resident_id = resident.id ORDER BY f.created_at, f.partner_id LIMIT 1)"
        " WHERE EXISTS (SELECT 1 FROM resident_link AS f WHERE f.resident_id = resident.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("resident_link", schema=None) as batch_op:
        for name, _ in reversed(SUPPLIED):
            batch_op.drop_column(name)
    with op.batch_alter_table("resident", schema=None) as batch_op:
        batch_op.drop_column("preference_partner_id")
    with op.batch_alter_table("referral_replica", schema=None) as batch_op:
        batch_op.drop_column("source_partner_id")
