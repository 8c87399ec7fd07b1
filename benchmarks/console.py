"""The console's pages over many cases: how long /console/cases and /console/figures take.

Fills N cases (default 100,000) of the example community as `benchmarks/scheduler.py` does
(open cases with deadlines spread over a month), puts each on a building of its post's grid so
the dashboard's map has something to draw, and times GET /console/cases and GET
/console/figures (and its 15-second live fragment) for the centre director, through the app in
process (best of 3, after one warm-up).

    uv run python benchmarks/console.py                 # SQLite, and PostgreSQL if reachable
    uv run python benchmarks/console.py --cases 20000 --db sqlite

PostgreSQL uses the database `griddesk_bench_console` on the server of --pg-url (created when
missing, emptied before the run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from sqlalchemy import select, text, update
from sqlalchemy.pool import NullPool
from sqlmodel import col

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient

from benchmarks import databases
from benchmarks.scheduler import START, fill
from bot.app import build_app, build_services
from bot.settings import Settings
from storage import db
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork

NOW = START + dt.timedelta(days=14)
PAGES = ("/console/cases", "/console/cases?state=open&overdue=1", "/console/figures",
         "/console/figures?by=worker", "/console/figures?partial=live")


def place_on_buildings(url: str) -> None:
    """The generated cases have a post but no grid or building: give them their post's."""
    engine = db.make_engine(url)
    with UnitOfWork(engine) as uow:
        for post in uow.session.scalars(select(t.Post).where(col(t.Post.kind) == "grid")):
            building = uow.session.scalars(select(t.Building).where(col(t.Building.grid_id) == post.grid_id)
                                           .order_by(col(t.Building.id))).first()
            uow.session.execute(update(t.Case).where(col(t.Case.post_id) == post.id)
                                .values(grid_id=post.grid_id, building_id=building.id if building else None))
        uow.commit()
    engine.dispose()


def settle(url: str) -> None:
    """PostgreSQL: the statistics and visibility map autovacuum keeps for a table that grew over
    months. Without them, just after a bulk load, the planner takes 100,000 cases for a few
    hundred and the timings say more about the load than about the pages."""
    if not url.startswith("postgresql"):
        return
    engine = db.make_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as conn:
        conn.execute(text('VACUUM ANALYZE "case", caseevent'))
    engine.dispose()


def run(name: str, url: str, count: int) -> None:
    fill(url, count)
    place_on_buildings(url)
    settle(url)
    services = build_services(Settings(database_url=url, secret_key="bench", demo=True), clock=FixedClock(NOW))
    print(f"{name}, {count} cases")
    with TestClient(build_app(services, run_background=False)) as client:
        client.post("/api/demo/persona", json={"who": "person:lin_hui"}).raise_for_status()
        for path in PAGES:
            answer = client.get(path)  # warm-up
            assert answer.status_code == 200, (path, answer.status_code)
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                client.get(path)
                best = min(best, time.perf_counter() - started)
            print(f"  GET {path:<42} {best * 1000:8.1f} ms  ({len(answer.content) // 1024} KiB)")
    services.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    databases.add_arguments(parser)
    databases.run_each(parser.parse_args(), "griddesk_bench_console", run)


if __name__ == "__main__":
    main()
