"""Deadline watch throughput: find and process the due work among many open cases.

Bulk-inserts N open cases (default 100,000) of the example community with deadlines spread over
a month, plans their due actions (the full pass a first start runs, chunk by chunk), then runs
scheduler passes on a simulated clock and prints, per pass, how long finding the due actions took
and how long performing them (reminders and escalations with their events and notices) took.
Last, a restart: a new scheduler's first pass on the same data and policy, which no longer
re-plans every case.

    uv run python benchmarks/scheduler.py                      # SQLite, and PostgreSQL if reachable
    uv run python benchmarks/scheduler.py --cases 20000 --db sqlite

PostgreSQL uses the database `griddesk_bench_sched` on the server of --pg-url (created when
missing, emptied before the run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.worker import Scheduler
from handlers.registry.loader import load_registry
from handlers.watch import escalation
from storage import (
    db,
    scheduler,
)
from storage import tables as t
from storage.clock import FixedClock
from storage.db import recreate_database
from storage.unit_of_work import UnitOfWork

ROOT = Path(__file__).resolve().parent.parent
START = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Beijing
# No digests in the measured passes: they are per person, not per case.
POLICY = escalation.WatchPolicy(digest_time=dt.time(23, 59))
STATES = ("assigned", "acknowledged", "replied")


def fresh_postgres(url: str) -> str:
    return recreate_database(url, "griddesk_bench_sched")


def fill(url: str, count: int) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    with UnitOfWork(engine) as uow:
        load_registry(uow.session, ROOT / "config" / "example-community.yaml", START)
        uow.commit()
        session = uow.session
        community = session.scalars(select(t.Community)).one()
        resident = session.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        posts = [p for p in session.scalars(select(t.Post).where(t.Post.kind == "grid"))
                 if p.code != "G05"]  # G05's A holder is on leave
        assert resident is not None
    rng = random.Random(7)
    rows = []
    for n in range(count):
        ack_due = START + dt.timedelta(seconds=rng.uniform(0, 30 * 86400))
        post = posts[n % len(posts)]
        state = STATES[n % 3]
        rows.append({
            "number": f"ZN-BENCH-{n:07d}", "community_id": community.id, "kind": "service_request",
            "category": "facilities", "urgent": n % 50 == 0, "text": f"楼道灯坏了 #{n}", "lang": "zh-Hans",
            "channel": "web", "resident_id": resident.id, "state": state, "post_id": post.id,
            "holder_id": post.a_holder_id,
            "first_responder_id": post.a_holder_id if state != "assigned" else None,
            "created_at": ack_due - dt.timedelta(hours=1), "dispatched_at": ack_due - dt.timedelta(hours=1),
            "ack_due": ack_due, "reply_due": ack_due + dt.timedelta(days=1),
            "resolve_due": ack_due + dt.timedelta(days=5), "rating_comment": "", "reopen_count": 0,
            "escalation_level": 0,
        })
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(insert(t.Case), rows[start:start + 5000])
    engine.dispose()


def run(name: str, url: str, count: int, passes: int, step: dt.timedelta) -> None:
    print(f"\n== {name}: {count} open cases, deadlines spread over 30 days")
    began = time.perf_counter()
    fill(url, count)
    print(f"bulk insert: {time.perf_counter() - began:.1f} s")
    engine = db.make_engine(url)
    began = time.perf_counter()
    chunks, more = 0, True
    while more:
        _offered, more = escalation.plan_full_chunk(engine, START, POLICY)
        chunks += 1
    with UnitOfWork(engine) as uow:
        planned = scheduler.pending_count(uow.session)
    print(f"full planning pass (first start): {planned} due actions in {time.perf_counter() - began:.1f} s, "
          f"{chunks} chunks of {escalation.PLAN_CHUNK} cases")
    print(f"{'simulated time (UTC)':<26}{'due':>6}{'done':>6}{'skipped':>8}{'find ms':>9}{'process s':>10}"
          f"{'per action ms':>14}{'pass s':>8}")
    now = START
    for _ in range(passes):
        now += step
        began = time.perf_counter()
        report = escalation.tick(engine, now, POLICY, batch=100_000)
        total = time.perf_counter() - began
        per = report.process_seconds / report.due * 1000 if report.due else 0.0
        print(f"{now:%Y-%m-%d %H:%M:%S}{'':<7}{report.due:>6}{report.done:>6}{report.skipped:>8}"
              f"{report.find_seconds * 1000:>9.1f}{report.process_seconds:>10.2f}{per:>14.2f}{total:>8.2f}")
    # A restart: a new process's scheduler, same data and policy. It reads the stored cursors and
    # goes straight to due work instead of re-planning every case first.
    now += step
    restarted = Scheduler(engine, FixedClock(now), POLICY, batch=100_000)
    began = time.perf_counter()
    report = restarted.tick()
    print(f"restart, first pass of a new scheduler: {time.perf_counter() - began:.2f} s "
          f"({report.due} due, {report.done} done, {report.planned} due actions offered)")
    with UnitOfWork(engine) as uow:
        began = time.perf_counter()
        for _ in range(20):
            scheduler.due_ids(uow.session, now, 1000)
        find = (time.perf_counter() - began) / 20 * 1000
        events = uow.session.scalar(select(func.count()).select_from(t.CaseEvent))
        notices = uow.session.scalar(select(func.count()).select_from(t.Outbox))
    print(f"finding due work with nothing due: {find:.2f} ms; {events} case events and {notices} notices written")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--step-minutes", type=float, default=10.0, help="simulated time between passes")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    step = dt.timedelta(minutes=args.step_minutes)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("SQLite", f"sqlite:///{tmp}/bench.db", args.cases, args.passes, step)
    if args.db in ("postgresql", "both"):
        try:
            url = fresh_postgres(args.pg_url)
        except Exception as exc:  # noqa: BLE001  (the run still reports SQLite)
            print(f"\nPostgreSQL skipped: {exc}")
            return
        run("PostgreSQL", url, args.cases, args.passes, step)


if __name__ == "__main__":
    main()
