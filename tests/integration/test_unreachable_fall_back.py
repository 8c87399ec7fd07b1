"""A notice a channel refuses as unreachable, the same on every channel (bot/unreachable.py):
Telegram's 403 "bot was blocked by the user" and the Official Account's 40003 go again to the
person's next channel, and a case card whose holder no channel reaches moves the case to the B
holder at once. WeCom's own refusals are in test_wecom_sender.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlmodel import col

from bot import unreachable
from bot.app import Services
from bot.channels import wechat as wc
from bot.channels.telegram import TelegramSender
from bot.sender import OutboxSender
from handlers import notify
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat
from tests.fakes.serving import serve
from tests.fakes.telegram_bot_api import BLOCKED, FakeTelegram
from tests.fakes.wechat import FakeWeChat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
LAMP = "3单元楼道的灯坏了三天了"  # post G01: A 张丽 (zhang_li), B 王芳 (wang_fang)
ZHANG_CHAT, WANG_CHAT, RESIDENT_CHAT = 7001, 7002, 7003


@dataclass
class Channels:
    """The loopback Telegram and Official Account, and an outbox sender over both (and the web
    inbox)."""

    telegram: FakeTelegram
    wechat: FakeWeChat
    sender: OutboxSender
    services: Services

    def bind(self, code: str, channel: str, address: str) -> None:
        with UnitOfWork(self.services.engine) as uow:
            person = uow.session.scalars(select(t.Person).where(col(t.Person.code) == code)).one()
            notify.ensure_identity(uow.session, channel, address, self.services.clock.now(), person=person)
            uow.commit()

    def on_telegram(self, code: str, chat: int, name: str) -> None:
        self.telegram.user(chat, name)
        self.telegram.start_bot(chat)
        self.bind(code, "telegram", str(chat))

    def on_wechat(self, code: str) -> str:
        """A follower whose 48 h window is open, bound to the person; their openid."""
        openid = self.wechat.add_user()
        self.wechat.wrote(openid)
        self.bind(code, "wechat", openid)
        return openid

    def card_texts(self, chat: int) -> list[str]:
        return [m.text or "" for m in self.telegram.sent(chat)]


@pytest.fixture
def fakes(clock: FixedClock) -> Iterator[tuple[FakeTelegram, FakeWeChat, str]]:
    wechat = FakeWeChat(clock=clock)
    with FakeTelegram() as telegram, serve(wechat.api_app) as api:
        yield telegram, wechat, api


@pytest_asyncio.fixture
async def channels(fakes: tuple[FakeTelegram, FakeWeChat, str], services: Services,
                   clock: FixedClock) -> AsyncIterator[Channels]:
    telegram, wechat, api = fakes
    bot = telegram.bot()
    client = wc.WeChatClient(wechat.appid, wechat.secret, api_base=api,
                             tokens=wc.MemoryTokenStore(now=lambda: clock.now().timestamp()))
    senders: dict[str, Any] = {
        "telegram": TelegramSender(bot, engine=services.engine, per_chat_per_second=1000, global_per_second=1000),
        "wechat": wc.WeChatSender(client, state=services.state, engine=services.engine),
        "web": services.senders["web"],
    }
    yield Channels(telegram, wechat, OutboxSender(services.engine, senders, clock), services)
    await bot.session.close()


async def new_case(chat: Chat, channels: Channels) -> str:
    said = await chat.resident(0).says(LAMP)
    number = NUMBER.search(said.text).group(0)  # type: ignore[union-attr]
    await channels.sender.drain()
    return number


def escalations(services: Services, number: str) -> list[tuple[str, str, str]]:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(col(t.Case.number) == number)).one()
        moved = uow.session.scalars(select(t.CaseEvent).where(
            col(t.CaseEvent.case_id) == case.id, col(t.CaseEvent.action) == "escalated")).all()
        return [(e.data["reason"], e.data["from"], e.data["to"]) for e in moved]


def holder_of(services: Services, number: str) -> str:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(col(t.Case.number) == number)).one()
        holder = uow.session.get(t.Person, case.holder_id)
        assert holder is not None
        return holder.code


def identity(services: Services, channel: str, address: str) -> t.Identity:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Identity).where(
            col(t.Identity.channel) == channel, col(t.Identity.address) == address)).one()


def notify_in_order(services: Services, code: str, order: str) -> None:
    """The staff member's own channel order for notices."""
    with UnitOfWork(services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(col(t.Person.code) == code)).one()
        person.notify_order = order
        uow.commit()


def notice_on(session: Any, topic: str) -> t.Outbox:
    """The newest notice with `topic`."""
    row = session.scalars(select(t.Outbox).where(col(t.Outbox.topic) == topic)
                          .order_by(col(t.Outbox.id).desc())).first()
    assert row is not None
    return row  # type: ignore[no-any-return]


def rows_to(services: Services, channel: str, address: str) -> list[t.Outbox]:
    with UnitOfWork(services.engine) as uow:
        return list(uow.session.scalars(select(t.Outbox).where(
            col(t.Outbox.channel) == channel, col(t.Outbox.address) == address).order_by(col(t.Outbox.id))))


# --------------------------------------------------------------------------- Telegram


async def test_a_case_card_telegram_refuses_as_blocked_goes_to_the_b_holder_at_once(
        channels: Channels, services: Services, chat: Chat) -> None:
    channels.on_telegram("zhang_li", ZHANG_CHAT, "张丽")  # 张丽 is on Telegram only ...
    channels.telegram.block(ZHANG_CHAT)  # ... and has blocked the bot
    channels.on_telegram("wang_fang", WANG_CHAT, "王芳")

    number = await new_case(chat, channels)

    assert escalations(services, number) == [("holder_unreachable", "zhang_li", "wang_fang")]
    assert holder_of(services, number) == "wang_fang"
    card = next(text for text in channels.card_texts(WANG_CHAT) if number in text)
    assert "无法联系到承办人" in card
    assert channels.card_texts(ZHANG_CHAT) == []
    refused = [r for r in rows_to(services, "telegram", str(ZHANG_CHAT)) if number in r.text]
    assert [(r.state, r.last_error) for r in refused] == [(t.OutboxState.UNREACHABLE, BLOCKED)]
    blocked = identity(services, "telegram", str(ZHANG_CHAT))
    assert not blocked.reachable and blocked.unreachable_reason == BLOCKED
    # The card was not also left in 张丽's web inbox (she is only told the case went up).
    inbox = rows_to(services, "web", "person:zhang_li")
    assert [r.topic for r in inbox] == ["watch.escalated_away"]
    told = [n.text for n in await chat.resident(0).inbox() if number in n.text and "联系不上" in n.text]
    assert len(told) == 1 and "王芳" in told[0]


async def test_a_case_card_telegram_refuses_goes_to_the_holders_official_account(
        channels: Channels, services: Services, chat: Chat) -> None:
    channels.on_telegram("zhang_li", ZHANG_CHAT, "张丽")
    openid = channels.on_wechat("zhang_li")  # her next channel in the staff order
    channels.telegram.block(ZHANG_CHAT)

    number = await new_case(chat, channels)

    assert escalations(services, number) == []
    assert holder_of(services, number) == "zhang_li"
    assert [s.kind for s in channels.wechat.seen(openid) if number in s.text] == ["custom"]
    again = [r for r in rows_to(services, "wechat", openid) if number in r.text]
    assert [r.state for r in again] == [t.OutboxState.SENT]
    assert again[0].buttons  # the card keeps its buttons (as numbered options on the account)


async def test_a_second_refused_card_of_a_moved_case_waits_in_the_web_inbox_and_does_not_escalate_again(
        channels: Channels, services: Services, chat: Chat, clock: FixedClock) -> None:
    channels.on_telegram("zhang_li", ZHANG_CHAT, "张丽")
    channels.telegram.block(ZHANG_CHAT)
    said = await chat.resident(0).says(LAMP)
    number = NUMBER.search(said.text).group(0)  # type: ignore[union-attr]
    with UnitOfWork(services.engine) as uow:  # a second notice of the case, queued behind the card
        zhang = uow.session.scalars(select(t.Person).where(col(t.Person.code) == "zhang_li")).one()
        case = uow.session.scalars(select(t.Case).where(col(t.Case.number) == number)).one()
        notify.tell(uow.session, clock.now(), "case.covering", person=zhang, case=case, topic=number)
        uow.commit()
        second = notice_on(uow.session, number)
        assert second.channel == "telegram"

    await channels.sender.drain()

    assert escalations(services, number) == [("holder_unreachable", "zhang_li", "wang_fang")]
    refused = rows_to(services, "telegram", str(ZHANG_CHAT))
    assert [r.state for r in refused] == [t.OutboxState.UNREACHABLE] * 2
    # 张丽 is told the case went up, and the second notice waits for her in the web inbox.
    waiting = rows_to(services, "web", "person:zhang_li")
    assert [r.topic for r in waiting] == ["watch.escalated_away", number]
    assert (waiting[-1].text, waiting[-1].case_id) == (second.text, second.case_id)


async def test_a_residents_notice_telegram_refuses_goes_to_their_official_account(
        channels: Channels, services: Services, clock: FixedClock) -> None:
    channels.telegram.user(RESIDENT_CHAT, "李四")
    channels.telegram.start_bot(RESIDENT_CHAT)
    openid = channels.wechat.add_user()
    channels.wechat.wrote(openid)
    with UnitOfWork(services.engine) as uow:
        resident = uow.session.scalars(select(t.Resident).order_by(col(t.Resident.id))).first()
        assert resident is not None
        notify.ensure_identity(uow.session, "telegram", str(RESIDENT_CHAT), clock.now(), resident=resident)
        notify.ensure_identity(uow.session, "wechat", openid, clock.now(), resident=resident)
        notify.tell(uow.session, clock.now(), "case.covering", resident=resident, topic="停水通知")
        uow.commit()
        notice = notice_on(uow.session, "停水通知")
    assert notice.channel == "telegram"
    channels.telegram.block(RESIDENT_CHAT)

    await channels.sender.drain()

    assert [s.text for s in channels.wechat.seen(openid)][-1] == notice.text
    assert not identity(services, "telegram", str(RESIDENT_CHAT)).reachable


# --------------------------------------------------------------------------- the Official Account


async def test_a_case_card_the_official_account_refuses_goes_to_the_b_holder_at_once(
        channels: Channels, services: Services, chat: Chat) -> None:
    notify_in_order(services, "zhang_li", "wechat")
    gone = "o" + "x" * 27  # an openid the account does not know: 40003
    channels.bind("zhang_li", "wechat", gone)
    channels.on_telegram("wang_fang", WANG_CHAT, "王芳")

    number = await new_case(chat, channels)

    assert escalations(services, number) == [("holder_unreachable", "zhang_li", "wang_fang")]
    assert any(number in text and "无法联系到承办人" in text for text in channels.card_texts(WANG_CHAT))
    refused = identity(services, "wechat", gone)
    assert not refused.reachable and "40003" in refused.unreachable_reason
    dead = (await chat.staff("lin_hui").says("/dead")).text
    line = next(line for line in dead.splitlines() if "张丽" in line and "wechat" in line)
    assert "40003" in line and number in line


async def test_a_case_card_the_official_account_refuses_goes_to_the_holders_telegram(
        channels: Channels, services: Services, chat: Chat) -> None:
    notify_in_order(services, "zhang_li", "wechat,telegram")
    channels.bind("zhang_li", "wechat", "o" + "y" * 27)
    channels.on_telegram("zhang_li", ZHANG_CHAT, "张丽")

    number = await new_case(chat, channels)

    assert escalations(services, number) == []
    assert holder_of(services, number) == "zhang_li"
    card = next(m for m in channels.telegram.sent(ZHANG_CHAT) if number in (m.text or ""))
    assert card.reply_markup and "签收" in str(card.reply_markup)


# --------------------------------------------------------------------------- a failing fall-back


async def test_a_fall_back_that_fails_leaves_the_notice_marked_and_the_rest_of_the_batch_sent(
        channels: Channels, services: Services, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    channels.on_telegram("zhang_li", ZHANG_CHAT, "张丽")
    channels.on_telegram("wang_fang", WANG_CHAT, "王芳")
    channels.telegram.block(ZHANG_CHAT)

    queue_elsewhere = unreachable.reach_elsewhere

    def broken(session: Any, *args: Any) -> str:
        queue_elsewhere(session, *args)  # the notice queued on the web inbox ...
        session.flush()
        raise RuntimeError("the fall-back broke")  # ... and undone with the savepoint

    monkeypatch.setattr(unreachable, "reach_elsewhere", broken)
    with UnitOfWork(services.engine) as uow:
        people = {p.code: p for p in uow.session.scalars(select(t.Person).where(
            col(t.Person.code).in_(["zhang_li", "wang_fang"])))}
        notify.tell(uow.session, clock.now(), "case.covering", person=people["zhang_li"], topic="甲")
        notify.tell(uow.session, clock.now(), "case.covering", person=people["wang_fang"], topic="乙")
        uow.commit()
        ids = (notice_on(uow.session, "甲").id, notice_on(uow.session, "乙").id)

    assert await channels.sender.drain_once() == 2

    with UnitOfWork(services.engine) as uow:
        states = [uow.session.get(t.Outbox, i).state for i in ids]  # type: ignore[union-attr]
    assert states == [t.OutboxState.UNREACHABLE, t.OutboxState.SENT]
    assert not identity(services, "telegram", str(ZHANG_CHAT)).reachable
    assert rows_to(services, "web", "person:zhang_li") == []
