"""What is kept no longer: photos no case refers to after a week, web chat lines after
CHAT_HISTORY_DAYS; a photo on a case and a recent conversation stay."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from bot.app import Services
from bot.channels.base import Attachment, Incoming
from bot.worker import Scheduler
from handlers.watch.escalation import WatchPolicy
from storage import chat_history, media
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat
from tests.fakes.wechat import tiny_png

DAY = dt.timedelta(days=1)


def _store(services: Services, colour: tuple[int, int, int], age: dt.timedelta) -> int:
    with UnitOfWork(services.engine) as uow:
        row = media.put(uow.session, tiny_png(colour), "image/png", now=services.clock.now() - age)
        uow.commit()
        assert row.id is not None
        return row.id


def _kept(services: Services) -> set[int]:
    with UnitOfWork(services.engine) as uow:
        return set(uow.session.scalars(select(t.Media.id)))


def _said(services: Services) -> list[str]:
    with UnitOfWork(services.engine) as uow:
        return list(uow.session.scalars(select(t.ChatLine.text).order_by(t.ChatLine.id)))


async def test_orphan_photos_and_old_chat_lines_go_and_the_rest_stays(
        services: Services, chat: Chat) -> None:
    now = services.clock.now()
    forgotten = _store(services, (1, 1, 1), 8 * DAY)   # sent, never described
    on_a_case = _store(services, (2, 2, 2), 30 * DAY)  # old, but a case shows it
    recent = _store(services, (3, 3, 3), 2 * DAY)      # may still join a conversation
    sent_again = _store(services, (4, 4, 4), 8 * DAY)
    assert _store(services, (4, 4, 4), 0 * DAY) == sent_again  # the same bytes, sent again today

    resident = chat.resident(0).address
    replies = await services.pipeline.handle(Incoming(
        "web", resident, text="楼道灯坏了三天了",
        attachments=(Attachment(kind="photo", ref=media.REF_PREFIX + str(on_a_case)),)))
    assert "ZN-" in replies[0].text
    with UnitOfWork(services.engine) as uow:
        for text, age in (("去年说的话", 40 * DAY), ("上周说的话", 7 * DAY)):
            chat_history.record_turn(uow.session, channel="web", address=resident, said=text,
                                     action="", replies=[], now=now - age)
        uow.commit()

    Scheduler(services.engine, services.clock, WatchPolicy(), chat_history_days=30).tick()

    assert forgotten not in _kept(services)
    assert _kept(services) == {on_a_case, recent, sent_again}
    assert _said(services) == ["上周说的话"]
    # The case still opens its photo.
    with UnitOfWork(services.engine) as uow:
        refs = list(uow.session.scalars(select(t.Attachment.ref)))
    assert refs == [media.REF_PREFIX + str(on_a_case)]
