"""Write the next migration: what the tables declare that the newest migration does not build.

    uv run python -m storage.migrations.new "what changed"

Alembic compares the tables with an empty SQLite database brought to the newest migration and
writes the difference as revision NNNN+1. Read and tidy it before committing: autogenerate does
not see renames, and data moves are written by hand.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from storage.db import MIGRATIONS, alembic_config


def next_revision() -> str:
    numbers = [int(p.name[:4]) for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: list[str] | None = None) -> None:
    message = " ".join(sys.argv[1:] if argv is None else argv) or "schema change"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{Path(tmp) / 'head.db'}")
        command.upgrade(cfg, "head")
        command.revision(cfg, message=message, autogenerate=True, rev_id=next_revision())


if __name__ == "__main__":
    main()
