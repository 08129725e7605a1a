"""The one Alembic environment of every service: the service's schema (its migrations package)
says which models autogenerate compares against; the wiring is ach_platform.migrations.run_env."""

import importlib

from ach_platform.migrations import run_env
from alembic import context
from sqlmodel import SQLModel

for module in context.config.attributes.get("models", ()):
    importlib.import_module(module)  # registers the tables in SQLModel.metadata

run_env(SQLModel.metadata)
