"""Alembic environment of the screening service (the wiring is shared: ach_platform.migrations)."""

import ach_events.inbox
import ach_events.outbox
import ach_events.resident_replica  # noqa: F401
import ach_screening.store  # noqa: F401  (registers the service's tables for autogenerate)
from ach_platform.migrations import run_env
from sqlmodel import SQLModel

run_env(SQLModel.metadata)
