"""The centre's figures over many cases: how long one report takes per grouping.

Fills N cases (default 100,000) of the example community with deadlines spread over a month,
as `benchmarks/scheduler.py` does, and times `handlers.figures.tally.figures` by community,
committee, grid and worker (best of 3), over all of them and over their first week.

    uv run python benchmarks/figures.py                 # SQLite, and PostgreSQL if reachable
    uv run python benchmarks/figures.py --cases 20000 --db sqlite

PostgreSQL uses the database `griddesk_bench_figures` on the server of --pg-url (created when
missing, emptied before the run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import databases
from benchmarks.scheduler import START, fill
from handlers.figures import tally
from storage import db
from storage import tables as t
from storage.unit_of_work import UnitOfWork

NOW = START + dt.timedelta(days=14)


def run(name: str, url: str, count: int) -> None:
    fill(url, count)
    engine = db.make_engine(url)
    print(f"{name}, {count} cases")
    with UnitOfWork(engine) as uow:
        community = uow.session.scalars(select(t.Community)).one()
        for label, last in (("all", dt.date(2026, 12, 31)), ("first week", dt.date(2026, 11, 29))):
            for by in tally.GROUPINGS:
                best = float("inf")
                for _ in range(3):
                    started = time.perf_counter()
                    report = tally.figures(uow.session, community, dt.date(2026, 11, 1), last, by, NOW)
                    best = min(best, time.perf_counter() - started)
                print(f"  {label:<10} by {by:<10} {best * 1000:8.1f} ms  ({len(report.rows)} rows,"
                      f" {report.total.cases} cases, {report.total.overdue} overdue)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    databases.add_arguments(parser)
    databases.run_each(parser.parse_args(), "griddesk_bench_figures", run)


if __name__ == "__main__":
    main()
