"""The databases a benchmark over many cases runs on: SQLite in a temporary file, and
PostgreSQL in a scratch database of the server of --pg-url (created when missing, emptied
before the run), skipped with a sentence when that server does not answer."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.db import recreate_database


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))


def run_each(args: argparse.Namespace, scratch: str, run: Callable[[str, str, int], None]) -> None:
    """`run(name, url, cases)` on each database `--db` asks for."""
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("SQLite", f"sqlite:///{tmp}/bench.db", args.cases)
    if args.db in ("postgresql", "both"):
        try:
            url = recreate_database(args.pg_url, scratch)
        except Exception as exc:  # noqa: BLE001  (the run still reports SQLite)
            print(f"\nPostgreSQL skipped: {exc}")
            return
        run("PostgreSQL", url, args.cases)
