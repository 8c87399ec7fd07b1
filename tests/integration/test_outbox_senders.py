"""The outbox sender as a worker: several senders on one database, retries, dead notices."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.app import Services
from bot.channels.base import Outgoing, SendResult
from bot.sender import OutboxSender
from storage import db, outbox
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.integration.test_statement_budget import file, residents_of


class Recorder:
    """A channel that accepts everything and remembers the order it saw."""

    channel = "test"

    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.log = log

    async def send(self, message: Outgoing) -> SendResult:
        await asyncio.sleep(0)  # let the other sender interleave
        self.log.append((message.address, message.id))
        return SendResult(ok=True)


class Flaky:
    channel = "test"

    def __init__(self, results: list[SendResult]) -> None:
        self.results = results

    async def send(self, message: Outgoing) -> SendResult:
        return self.results.pop(0)


def queue(engine: Engine, clock: FixedClock, recipients: int, each: int) -> list[int]:
    with UnitOfWork(engine) as uow:
        for n in range(each):
            for r in range(recipients):
                outbox.enqueue(uow.session, channel="test", address=f"r{r}", text=f"notice {n} for r{r}",
                               now=clock.now())
        uow.commit()
        # Written in the order they were queued.
        return list(uow.session.scalars(select(col(t.Outbox.id)).where(col(t.Outbox.channel) == "test")
                                        .order_by(col(t.Outbox.id))))


async def test_two_senders_deliver_each_notice_once_and_in_order(engine: Engine, clock: FixedClock) -> None:
    ids = queue(engine, clock, recipients=15, each=3)
    log: list[tuple[str, int]] = []
    first = OutboxSender(engine, {"test": Recorder(log)}, clock, batch=10)
    second = OutboxSender(engine, {"test": Recorder(log)}, clock, batch=10)
    await asyncio.gather(first.drain(), second.drain())
    await asyncio.gather(first.drain(), second.drain())
    assert Counter(i for _, i in log) == Counter(ids)
    for address in {a for a, _ in log}:
        seen = [i for a, i in log if a == address]
        assert seen == sorted(seen)
    with UnitOfWork(engine) as uow:
        assert {r.state for r in uow.session.scalars(select(t.Outbox))} == {"sent"}


async def test_rate_limited_notice_waits_without_counting_and_failures_end_dead_with_reason(
        engine: Engine, clock: FixedClock) -> None:
    [first, later] = queue(engine, clock, recipients=1, each=2)
    channel = Flaky([SendResult(ok=False, retry_after=30), SendResult(ok=False, error="HTTP 502"),
                     SendResult(ok=False, error="HTTP 502"), SendResult(ok=True)])
    sender = OutboxSender(engine, {"test": channel}, clock, max_attempts=2)
    assert await sender.drain() == 1  # 429: the recipient waits 30 s
    assert await sender.drain() == 0
    clock.advance(dt.timedelta(seconds=31))
    await sender.drain()  # 502, retried with backoff
    clock.advance(dt.timedelta(minutes=5))
    await sender.drain()  # 502 again: dead after two failures; the next notice goes out
    with UnitOfWork(engine) as uow:
        dead = uow.session.get(t.Outbox, first)
        sent = uow.session.get(t.Outbox, later)
        assert dead is not None and sent is not None
        assert (dead.state, dead.attempts, dead.last_error) == ("dead", 2, "HTTP 502")
        assert sent.state == "sent"


async def test_a_claimed_notice_is_leased_until_marked(engine: Engine, clock: FixedClock) -> None:
    [row_id] = queue(engine, clock, recipients=1, each=1)
    with UnitOfWork(engine) as uow:
        claimed = outbox.claim_due(uow.session, channels=["test"], now=clock.now(), limit=10,
                                   lease=dt.timedelta(seconds=60))
        uow.commit()
    assert [r.id for r in claimed] == [row_id]
    with UnitOfWork(engine) as uow:  # another sender, meanwhile
        assert outbox.claim_due(uow.session, channels=["test"], now=clock.now(), limit=10,
                                lease=dt.timedelta(seconds=60)) == []
    clock.advance(dt.timedelta(seconds=61))  # the first sender died: the lease runs out
    log: list[tuple[str, int]] = []
    assert await OutboxSender(engine, {"test": Recorder(log)}, clock).drain() == 1
    assert log == [("r0", row_id)]


async def test_each_channels_last_successful_send_and_failing_since_are_recorded(
        engine: Engine, clock: FixedClock) -> None:
    queue(engine, clock, recipients=1, each=4)
    channel = Flaky([SendResult(ok=True), SendResult(ok=False, error="HTTP 502"),
                     SendResult(ok=False, retry_after=30), SendResult(ok=True)])
    sender = OutboxSender(engine, {"test": channel}, clock)
    record = sender.calls["test"]
    sent_at = clock.now()

    await sender.drain_once()
    assert (record.last_ok_at, record.failing_since) == (sent_at, None)
    failed_at = clock.advance(dt.timedelta(minutes=1))
    await sender.drain_once()
    assert (record.last_ok_at, record.failing_since) == (sent_at, failed_at)
    clock.advance(dt.timedelta(minutes=5))
    await sender.drain_once()  # a rate limit is neither a success nor a failure
    assert (record.last_ok_at, record.failing_since) == (sent_at, failed_at)
    back_at = clock.advance(dt.timedelta(minutes=1))
    await sender.drain_once()
    assert (record.last_ok_at, record.failing_since) == (back_at, None)


async def test_a_sender_whose_database_is_down_backs_off_and_says_so_once(
        tmp_path: Path, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    gone = db.make_engine(f"sqlite:///{tmp_path}/no/such/dir/griddesk.db")
    sender = OutboxSender(gone, {"test": Recorder([])}, clock, idle_seconds=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        for _ in range(500):
            if sender.rounds.failures >= 5:
                break
            await asyncio.sleep(0.01)
        assert sender.loop.running and sender.rounds.failures >= 5
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        gone.dispose()

    assert sender.loop.state == "stopped"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "outbox sender rounds: failing" in said[0]


async def test_a_notice_to_the_web_inbox_is_there_at_the_commit_without_a_sender_round(
        services: Services) -> None:
    resident = residents_of(services, "ZN-B01", 1)[0]
    number = file(services, resident)  # its grid worker, 张丽, has only the web inbox
    with UnitOfWork(services.engine) as uow:
        cards = uow.session.scalars(select(t.Outbox).where(t.Outbox.address == "person:zhang_li")).all()  # type: ignore[arg-type]
    assert [number in c.text for c in cards] == [True]
    assert cards[0].state == "sent" and cards[0].sent_at is not None
    assert await services.sender.drain() == 0  # nothing was left for a sender to do
