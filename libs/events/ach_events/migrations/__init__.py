"""The tables the event backbone keeps alike in every service, as Alembic branches of their own
that each service's schema includes (see ach_platform.migrations): ``backbone`` (the outbox and
the inbox, in every service) and ``resident_replica`` (what the resident index says: links,
consents, merges; in the services that decide on residents' data)."""

from __future__ import annotations

from pathlib import Path

from ach_platform.migrations import SchemaBranch

HERE = Path(__file__).parent

BACKBONE = SchemaBranch("backbone", HERE / "backbone", ("ach_events.outbox", "ach_events.inbox"))
RESIDENT_REPLICA = SchemaBranch(
    "resident_replica", HERE / "resident_replica", ("ach_events.resident_replica",)
)
