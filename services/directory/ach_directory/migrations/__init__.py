"""The directory service's schema: its own revisions (versions/) and the library branches it includes."""

from pathlib import Path

from ach_events.migrations import BACKBONE
from ach_platform.migrations import Schema

SCHEMA = Schema("directory", Path(__file__).parent / "versions", ("ach_directory.store",), (BACKBONE,))
