"""Alembic environment of the directory service (the wiring is shared: ach_platform.migrations)."""

import ach_directory.store  # noqa: F401  (registers the service's tables for autogenerate)
import ach_events.inbox
import ach_events.outbox  # noqa: F401
from ach_platform.migrations import run_env
from sqlmodel import SQLModel

run_env(SQLModel.metadata)
