"""Writing marks an account reachable and dates its last message (bot/pipeline.py, `_touch`): at
once for an account marked unreachable, to the minute (TOUCH_EVERY) for one that writes again and
again, so a conversation does not rewrite the same row for every message."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlmodel import col

from bot.app import Services
from bot.pipeline import TOUCH_EVERY
from storage import tables as t
from storage.clock import FixedClock, as_utc
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat, Speaker


def account(services: Services, speaker: Speaker) -> t.Identity:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Identity).where(
            col(t.Identity.channel) == speaker.channel, col(t.Identity.address) == speaker.address)).one()


def last_inbound(services: Services, speaker: Speaker) -> dt.datetime | None:
    moment = account(services, speaker).last_inbound_at
    return as_utc(moment) if moment is not None else None


async def test_a_conversation_dates_its_account_once_a_minute(services: Services, chat: Chat,
                                                               clock: FixedClock) -> None:
    resident = chat.resident()
    first = clock.now()
    await resident.says("你好")
    assert last_inbound(services, resident) == first

    clock.advance(TOUCH_EVERY / 2)
    await resident.says("谢谢")
    assert last_inbound(services, resident) == first

    later = clock.advance(TOUCH_EVERY / 2 + dt.timedelta(seconds=1))
    await resident.says("再见")
    assert last_inbound(services, resident) == later


async def test_an_account_marked_unreachable_is_reachable_again_when_it_writes(
        services: Services, chat: Chat, clock: FixedClock) -> None:
    resident = chat.resident()
    await resident.says("你好")
    with UnitOfWork(services.engine) as uow:  # a notice to it was just refused
        uow.session.execute(update(t.Identity).where(col(t.Identity.id) == account(services, resident).id)
                            .values(reachable=False, unreachable_reason="blocked the bot"))
        uow.commit()

    now = clock.advance(dt.timedelta(seconds=5))
    await resident.says("在吗")

    written = account(services, resident)
    assert written.reachable
    assert as_utc(written.last_inbound_at or dt.datetime.min) == now

