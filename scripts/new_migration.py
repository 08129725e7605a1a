"""Write a new Alembic migration for one service by comparing its tables with a scratch database
migrated to its heads:  python scripts/new_migration.py <service> "<message>"   (make migration)."""

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
    migrations_dir = Path(package.__file__).parent / "migrations"
    with tempfile.TemporaryDirectory() as scratch:
        config = alembic_config(migrations_dir, f"sqlite:///{scratch}/scratch.db")
        command.upgrade(config, "heads")
        versions = migrations_dir / "versions"
        rev_id = f"{len(sorted(versions.glob('*.py'))) + 1:04d}"
        # On the service's own branch, in its own versions/ (the library branches are the libraries').
        command.revision(
            config,
            message=message,
            autogenerate=True,
            rev_id=rev_id,
            head=f"{service}@head",
            version_path=str(versions),
        )


if __name__ == "__main__":
    main()
