"""The screening service's schema: its own revisions (versions/) and the library branches it includes."""

from pathlib import Path

from ach_events.migrations import BACKBONE, RESIDENT_REPLICA
from ach_platform.migrations import Schema

SCHEMA = Schema(
    "screening", Path(__file__).parent / "versions", ("ach_screening.store",), (BACKBONE, RESIDENT_REPLICA)
)
