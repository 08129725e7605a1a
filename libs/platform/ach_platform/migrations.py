"""Alembic, run as its own step (``ach-<service> migrate`` / ``make migrate``), never at start-up.

A service's schema is its own revisions (``<package>/migrations/versions``) plus the branches the
libraries own for the tables every service keeps alike (the outbox and inbox; the resident
replica): the service's ``migrations`` package names them in ``SCHEMA``. One environment
(``ach_platform/alembic/env.py``) and one revision template serve every service. The database
records one head per branch; ``upgrade`` brings every branch to its head.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, create_engine, pool

from ach_platform.database import sync_url

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported where a migration runs, not when a service starts: it (with Mako and
# Pygments) is a large share of every service's import time, and serving never needs it.

ENVIRONMENT = Path(__file__).parent / "alembic"


@dataclass(frozen=True)
class SchemaBranch:
    """Revisions a library owns (branch ``label``), for tables several services keep alike."""

    label: str
    versions: Path
    models: tuple[str, ...]  # modules declaring its tables


@dataclass(frozen=True)
class Schema:
    """A service's schema: its own revisions (branch ``label``) after the library branches."""

    label: str
    versions: Path
    models: tuple[str, ...]
    branches: tuple[SchemaBranch, ...]


def schema_of(migrations_dir: Path) -> Schema:
    """The ``SCHEMA`` of a service's migrations package (``<package>/migrations``)."""
    module = importlib.import_module(f"{migrations_dir.resolve().parent.name}.migrations")
    schema = module.SCHEMA
    assert isinstance(schema, Schema), f"{module.__name__}.SCHEMA is no Schema"
    return schema


def alembic_config(migrations_dir: Path, url: str) -> Config:
    from alembic.config import Config

    schema = schema_of(migrations_dir)
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        os.pathsep.join(str(p) for p in (schema.versions, *(b.versions for b in schema.branches))),
    )
    # ConfigParser interpolation would choke on '%' in passwords.
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    config.attributes["models"] = (*(m for b in schema.branches for m in b.models), *schema.models)
    return config


def upgrade(migrations_dir: Path, url: str, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(migrations_dir, url), revision)


def run_env(target_metadata: MetaData | None = None) -> None:
    """Body of the Alembic environment (online mode only: we migrate real databases).
    ``target_metadata`` is what autogenerate compares against when a developer writes a migration."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by alembic_config"
    engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
