"""Exactly once across processes: a scheduler killed mid-pass, and two schedulers at once.

The scheduler runs in child processes (this file run as a script) on a simulated time given on
the command line, against the test's database.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app import Services
from bot.channels.base import Outgoing, SendResult
from handlers.cases import lifecycle
from handlers.notify import ensure_identity
from handlers.watch import escalation
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork

ROOT = Path(__file__).resolve().parents[2]
MONDAY_10AM = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)


class Delivers:
    """A channel that takes every notice: what is under test is the outbox's bookkeeping across
    processes (the web inbox would not do, its notices are delivered by being written)."""

    channel = "telegram"

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult(ok=True)


def on_a_sending_channel(services: Services) -> None:
    """Every person and demo resident reachable on `Delivers`' channel, which the sender serves."""
    with UnitOfWork(services.engine) as uow:
        for person in uow.session.scalars(select(t.Person)):
            ensure_identity(uow.session, Delivers.channel, f"p{person.id}", MONDAY_10AM, person=person)
        for resident in uow.session.scalars(select(t.Resident).where(t.Resident.demo.is_(True))):
            ensure_identity(uow.session, Delivers.channel, f"r{resident.id}", MONDAY_10AM, resident=resident)
        uow.commit()
    services.sender.senders[Delivers.channel] = Delivers()


def open_cases(services: Services, count: int) -> list[int]:
    """`count` stairwell-light cases from the demo residents, Monday 10:00 (acknowledge by 11:00)."""
    with UnitOfWork(services.engine) as uow:
        residents = list(uow.session.scalars(select(t.Resident).where(t.Resident.demo.is_(True))
                                             .order_by(t.Resident.id)))
        ids = []
        for n in range(count):
            opened = lifecycle.open_case(uow.session, resident=residents[n % len(residents)], kind="service_request",
                                     category="facilities", urgent=False, text=f"楼道灯坏了 #{n}", lang="zh-Hans",
                                     channel="web", now=MONDAY_10AM)
            uow.session.flush()
            ids.append(opened.case.id or 0)
        uow.commit()
    return ids


def scheduler_process(url: str, *moments: dt.datetime, kill_after: int = 0, barrier: Path | None = None
                      ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.integration.test_scheduler_processes", url,
            *(m.isoformat() for m in moments)]
    if kill_after:
        args += ["--kill-after", str(kill_after)]
    if barrier is not None:
        args += ["--barrier", str(barrier)]
    return subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen[bytes]) -> int:
    _out, err = process.communicate(timeout=120)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(err.decode())
    return process.returncode


def rows(services: Services, model: type, *where: object) -> list:  # type: ignore[type-arg]
    with UnitOfWork(services.engine) as uow:
        return list(uow.session.scalars(select(model).where(*where)))  # type: ignore[call-overload]


async def test_killed_scheduler_leaves_each_notice_to_go_out_exactly_once(services: Services,
                                                                          clock: FixedClock) -> None:
    on_a_sending_channel(services)
    ids = open_cases(services, 6)
    await services.sender.drain()
    already = {r.id for r in rows(services, t.Outbox)}
    overdue = MONDAY_10AM + dt.timedelta(hours=1, minutes=1)
    # The process dies right after its third escalation commits, before any sender runs.
    assert finish(scheduler_process(services.settings.database_url, overdue, kill_after=3)) == -signal.SIGKILL
    escalated = rows(services, t.CaseEvent, t.CaseEvent.action == "escalated")
    assert len(escalated) == 3
    waiting = [r for r in rows(services, t.Outbox) if r.id not in already]
    assert waiting and {r.state for r in waiting} == {"pending"}

    # A fresh start: the sender delivers what the dead process queued, the scheduler does the rest.
    clock.set(overdue)
    assert await services.sender.drain() == len(waiting)
    assert finish(scheduler_process(services.settings.database_url, overdue)) == 0
    escalation.tick(services.engine, overdue, escalation.WatchPolicy())  # and once more
    await services.sender.drain()
    assert await services.sender.drain() == 0

    escalated = rows(services, t.CaseEvent, t.CaseEvent.action == "escalated")
    assert Counter(e.case_id for e in escalated) == Counter(ids)
    notices = [r for r in rows(services, t.Outbox) if r.id not in already and r.topic != "digest"]
    assert {r.state for r in notices} == {"sent"}
    # Per case: the B holder, the previous holder and the resident, once each.
    per_case = Counter((r.case_id, r.address) for r in notices)
    assert set(per_case.values()) == {1} and len(per_case) == 3 * len(ids)


async def test_two_schedulers_on_postgresql_do_each_action_once(services: Services, tmp_path: Path) -> None:
    if not services.settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers within one file; the race is PostgreSQL's")
    ids = open_cases(services, 16)
    moments = [MONDAY_10AM + dt.timedelta(minutes=m) for m in (46, 61, 122)]  # remind, to B, to director
    moments.append(dt.datetime(2026, 11, 24, 0, 31, tzinfo=dt.UTC))  # Tuesday 08:31: digests
    # Both processes live through the same simulated moments, as real ones share the wall clock.
    first = scheduler_process(services.settings.database_url, *moments, barrier=tmp_path)
    second = scheduler_process(services.settings.database_url, *moments, barrier=tmp_path)
    assert (finish(first), finish(second)) == (0, 0)

    events = rows(services, t.CaseEvent, t.CaseEvent.action.in_(["escalated", "reminded"]))
    done = Counter((e.case_id, e.action, e.data.get("to") if e.action == "escalated" else e.data["due"])
                   for e in events)
    assert set(done.values()) == {1}
    # Every case climbed to the director: via the B holder, or straight up when the B holder is on
    # leave or already held it (刘洋 is on leave that week).
    for case_id in ids:
        climbed = [e.data["to"] for e in sorted(events, key=lambda e: e.seq)
                   if e.case_id == case_id and e.action == "escalated"]
        assert climbed[-1] == "lin_hui" and len(climbed) in (1, 2)
    assert {e.case_id for e in events if e.action == "reminded"} == set(ids)
    digests = [r for r in rows(services, t.Outbox) if r.topic == "digest"]
    assert digests and len(digests) == len({r.person_id for r in digests})
    actions = rows(services, t.DueAction)
    assert len(actions) == len({a.key for a in actions})


def wait_for_partner(barrier: Path, step: int, parties: int = 2) -> None:
    """Start simulated moment `step` only when every process has finished the one before."""
    (barrier / f"{step}.{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while len(list(barrier.glob(f"{step}.*"))) < parties:
        if time.monotonic() > deadline:
            raise SystemExit("the other scheduler process did not arrive")
        time.sleep(0.01)


def _main(argv: list[str]) -> None:
    from storage import db

    options: dict[str, str] = {}
    for flag in ("--kill-after", "--barrier"):
        if flag in argv:
            at = argv.index(flag)
            options[flag] = argv[at + 1]
            argv = argv[:at] + argv[at + 2:]
    kill_after = int(options.get("--kill-after", 0))
    barrier = Path(options["--barrier"]) if "--barrier" in options else None
    url, moments = argv[0], [dt.datetime.fromisoformat(m) for m in argv[1:]]
    engine = db.make_engine(url)
    committed = 0

    def after_commit(action: t.DueAction) -> None:
        nonlocal committed
        committed += action.state == "done"
        if kill_after and committed >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    for n, now in enumerate(moments):
        if barrier is not None:
            wait_for_partner(barrier, n)
        escalation.tick(engine, now, escalation.WatchPolicy(), after_commit=after_commit)
    engine.dispose()


if __name__ == "__main__":
    _main(sys.argv[1:])
