"""The WeChat sender against an API server that answers badly: an HTML 500 page, cut-off JSON,
a 404 with a text body, a connection dropped mid-body, no answer at all. Each time the notice
stays in the outbox with the reason, a warning is logged, the sender loop keeps running, and
the retry after the backoff delivers the notice exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.channels import wechat as wc
from bot.sender import OutboxSender, backoff
from storage import db, outbox
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.fakes.serving import serve
from tests.fakes.wechat import FakeWeChat
from tests.fakes.weixin_api import FAULTS

NOTICE = "工单 ZN-20261123-0001 已由张丽签收"


@pytest.fixture
def fake(clock: FixedClock) -> Iterator[tuple[FakeWeChat, str]]:
    fake = FakeWeChat(clock=clock)
    with serve(fake.api_app) as api:
        yield fake, api
        fake.release_hung()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = db.make_engine(sqlite_url)
    yield engine
    engine.dispose()


def sender_for(fake: FakeWeChat, api: str, engine: Engine, clock: FixedClock) -> OutboxSender:
    # A short timeout, so the "hang" fault costs half a second rather than the default ten.
    client = wc.WeChatClient(fake.appid, fake.secret, api_base=api, timeout=0.5,
                             tokens=wc.MemoryTokenStore(now=lambda: clock.now().timestamp()))
    channel = wc.WeChatSender(client, state=MemoryStateStore(), engine=engine)
    return OutboxSender(engine, {"wechat": channel}, clock, max_attempts=8, idle_seconds=0.02)


def notice_for(engine: Engine, openid: str, clock: FixedClock) -> int:
    with UnitOfWork(engine) as uow:
        outbox.enqueue(uow.session, channel="wechat", address=openid, text=NOTICE, now=clock.now())
        uow.commit()
        newest = uow.session.scalar(select(func.max(t.Outbox.id)))
        assert newest is not None
        return int(newest)


def row_of(engine: Engine, row_id: int) -> t.Outbox:
    with UnitOfWork(engine) as uow:
        return uow.session.scalars(select(t.Outbox).where(t.Outbox.id == row_id)).one()


def delivered(fake: FakeWeChat, openid: str) -> list[str]:
    return [s.text for s in fake.seen(openid) if s.kind == "custom"]


@pytest.mark.parametrize("path", ["message/custom/send", "token"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_broken_answer_is_retried_after_the_backoff_and_delivered_once(
        fake: tuple[FakeWeChat, str], sqlite_engine: Engine, clock: FixedClock, fault: str, path: str,
        caplog: pytest.LogCaptureFixture) -> None:
    wechat, api = fake
    resident = wechat.add_user()
    wechat.wrote(resident)
    sender = sender_for(wechat, api, sqlite_engine, clock)
    row_id = notice_for(sqlite_engine, resident, clock)
    wechat.inject(fault=fault, path=path)

    with caplog.at_level(logging.WARNING, logger="bot.channels.wechat"):
        assert await sender.drain_once() == 1
    failed = row_of(sqlite_engine, row_id)
    assert failed.state == "pending" and failed.attempts == 1 and failed.last_error.startswith("wechat ")
    assert failed.next_attempt_at == clock.now() + backoff(0)
    assert [r for r in caplog.records if "will be retried" in r.getMessage()]
    assert delivered(wechat, resident) == []
    assert await sender.drain_once() == 0  # not before the backoff

    clock.advance(backoff(0))
    assert await sender.drain_once() == 1
    assert row_of(sqlite_engine, row_id).state == "sent"
    assert delivered(wechat, resident) == [NOTICE]


async def test_the_sender_loop_outlives_every_fault_in_a_row(
        fake: tuple[FakeWeChat, str], engine: Engine, clock: FixedClock) -> None:
    wechat, api = fake
    resident = wechat.add_user()
    wechat.wrote(resident)
    sender = sender_for(wechat, api, engine, clock)
    for fault in sorted(FAULTS):
        wechat.inject(fault=fault, path="message/custom/send")
    row_id = notice_for(engine, resident, clock)
    stop = asyncio.Event()
    loop = asyncio.create_task(sender.run(stop))
    try:
        for attempt in range(len(FAULTS)):
            await wechat.wait_for(lambda n=attempt: row_of(engine, row_id).attempts > n, timeout=10)
            assert not loop.done()
            clock.advance(backoff(attempt))
            sender.wake()
        await wechat.wait_for(lambda: row_of(engine, row_id).state == "sent", timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=5)
    assert delivered(wechat, resident) == [NOTICE]
    faults = [c.answer.get("fault") for c in wechat.api_calls if c.answer and "fault" in c.answer]
    assert sorted(faults) == sorted(FAULTS)


def test_an_unknown_fault_is_a_mistake_in_the_test(fake: tuple[FakeWeChat, str]) -> None:
    with pytest.raises(ValueError):
        fake[0].inject(fault="slow")
    assert dt.timedelta(0) < backoff(0)
