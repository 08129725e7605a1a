"""Write a new Alembic migration for one service by comparing its tables with a scratch database
migrated to head:  python scripts/new_migration.py <service> "<message>"   (make migration)."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from ach_platform.migrations import alembic_config
from alembic import command


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit('usage: new_migration.py <service> "<message>"')
    service, message = sys.argv[1], sys.argv[2]
    package = importlib.import_module(f"ach_{service}")
    assert package.__file__, f"ach_{service} is not a package on disk"
    script_location = Path(package.__file__).parent / "migrations"
    with tempfile.TemporaryDirectory() as scratch:
        config = alembic_config(script_location, f"sqlite:///{scratch}/scratch.db")
        command.upgrade(config, "head")
        versions = sorted((script_location / "versions").glob("*.py"))
        rev_id = f"{len(versions) + 1:04d}"
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    main()
