"""The first revision of a library branch meets two kinds of database: a new one, where it
creates its tables, and one migrated before the branch existed, where each service's own
revisions had made them (perhaps not yet in their last shape). There it adds what is missing
instead, keeping every row."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


def existing_tables() -> set[str]:
    return set(sa.inspect(op.get_bind()).get_table_names())


def add_missing_columns(table: str, columns: list[sa.Column[object]]) -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    missing = [c for c in columns if c.name not in present]
    if missing:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in missing:
                batch_op.add_column(column)


def add_missing_index(table: str, name: str, columns: list[str]) -> None:
    present = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}
    if name not in present:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)
