"""indicator values are kept by definition version: a revised definition's values beside the earlier ones

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:40:00.000000
"""

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ["indicator", "geography", "period", "group"]


def _key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("indicator_value_pkey", "indicator_value", type_="primary")
        op.create_primary_key("indicator_value_pkey", "indicator_value", columns)
    else:  # SQLite changes a primary key by copying the table
        with warnings.catch_warnings():  # SQLAlchemy remarks that the copy's key differs: it should
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            with op.batch_alter_table("indicator_value", recreate="always") as batch_op:
                batch_op.create_primary_key("indicator_value_pkey", columns)


def upgrade() -> None:
    _key([*KEY, "definition_version"])


def downgrade() -> None:
    # Only the newest version of each value fits the earlier key.
    op.execute(
        "DELETE FROM indicator_value WHERE definition_version < (SELECT MAX(v.definition_version) "
        "FROM indicator_value v WHERE v.indicator = indicator_value.indicator AND v.geography = "
        'indicator_value.geography AND v.period = indicator_value.period AND v."group" = '
        'indicator_value."group")'
    )
    _key(KEY)
