"""The deadline watch as people notice it: reminders, escalations, follow-ups and digests, on a
simulated clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from bot.app import Services
from bot.channels.base import Outgoing, SendResult
from bot.sender import OutboxSender
from bot.worker import Scheduler, scheduler_of
from handlers.deadlines import WorkingCalendar
from handlers.notify import ensure_identity, tell
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
CAL = WorkingCalendar()


def bj(*args: int) -> dt.datetime:
    """Beijing wall-clock time as aware UTC."""
    return CAL.to_utc(dt.datetime(*args))  # type: ignore[arg-type]


def watch(services: Services) -> Scheduler:
    return scheduler_of(services.background)


def at(services: Services, clock: FixedClock, moment: dt.datetime) -> None:
    """Move the simulated clock and let the scheduler run once."""
    clock.set(moment)
    watch(services).tick()


def case_of(services: Services, number: str) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()


def events(services: Services, number: str, action: str) -> list[t.CaseEvent]:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        return list(uow.session.scalars(select(t.CaseEvent).where(
            t.CaseEvent.case_id == case.id, t.CaseEvent.action == action).order_by(t.CaseEvent.seq)))


async def report(chat: Chat, who: int, text: str) -> str:
    said = await chat.resident(who).says(text)
    match = NUMBER.search(said.text)
    assert match, said.text
    return match.group(0)


async def test_unacknowledged_case_moves_to_b_holder_then_to_the_director(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    resident, worker, b_holder, director = (chat.resident(0), chat.staff("zhang_li"), chat.staff("wang_fang"),
                                            chat.staff("lin_hui"))
    number = await report(chat, 0, "3单元楼道的灯坏了三天了")  # Monday 10:00; acknowledge by 11:00
    await worker.inbox()
    at(services, clock, bj(2026, 11, 23, 10, 40))
    assert not [n for n in await worker.inbox() if "时限提醒" in n.text]
    at(services, clock, bj(2026, 11, 23, 10, 46))
    reminded = await worker.inbox()
    assert [n for n in reminded if "时限提醒" in n.text and number in n.text and "签收" in n.text]

    at(services, clock, bj(2026, 11, 23, 11, 1))
    moved = [n for n in await b_holder.inbox() if number in n.text]
    assert len(moved) == 1 and "已升级由您处理" in moved[0].text and "张丽" in moved[0].text
    assert moved[0].action("签收").startswith("ack:")
    told = await resident.inbox()
    assert any("已升级" in n.text and "王芳" in n.text for n in told)
    assert any("王芳" in n.text for n in await worker.inbox())

    # The B holder gets a fresh hour; nobody acknowledges, so the director takes it.
    at(services, clock, bj(2026, 11, 23, 12, 2))
    assert [n for n in await director.inbox() if "已升级由您处理" in n.text and number in n.text]
    assert any("林慧" in n.text and "服务中心主任" in n.text for n in await resident.inbox())
    at(services, clock, bj(2026, 11, 23, 15, 0))
    escalated = events(services, number, "escalated")
    assert [(e.data["from"], e.data["to"], e.data["reason"]) for e in escalated] == [
        ("zhang_li", "wang_fang", "ack_overdue"), ("wang_fang", "lin_hui", "ack_overdue")]
    case = case_of(services, number)
    assert case.escalation_level == 2
    assert case.reply_due == bj(2026, 11, 24, 17, 30)  # escalation never moves the reply deadline

    # The director acknowledges; the reply deadline still passes: no one is above the director.
    await director.says(f"/ack {case.id}")
    at(services, clock, bj(2026, 11, 24, 17, 31))
    assert len(events(services, number, "escalated")) == 2


async def test_overdue_reply_goes_to_the_director_and_leave_is_honoured(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    # 杨涛 (G07) is on leave 2026-12-20..25; his B holder is 黄磊.
    clock.set(bj(2026, 12, 18, 10, 0))  # Friday
    resident, worker, b_holder, director = (chat.resident(6), chat.staff("yang_tao"), chat.staff("huang_lei"),
                                            chat.staff("lin_hui"))
    number = await report(chat, 6, "The stairwell light is broken")  # reply due Monday 12-21 17:30
    case = case_of(services, number)
    await worker.says(f"/ack {case.id}")
    await worker.inbox()
    at(services, clock, bj(2026, 12, 21, 13, 31))  # a quarter of the 16 working hours left
    assert not [n for n in await worker.inbox() if "时限提醒" in n.text]
    covering = [n for n in await b_holder.inbox() if "时限提醒" in n.text]
    assert len(covering) == 1 and number in covering[0].text and "代为关注" in covering[0].text

    at(services, clock, bj(2026, 12, 21, 17, 31))
    assert [n for n in await director.inbox() if "超时未答复" in n.text and number in n.text]
    told = [n.text for n in await resident.inbox()]
    # The resident writes English: told in it, with who holds the case now and the first responder.
    assert any("escalated" in text and "林慧" in text and "杨涛" in text for text in told)
    [escalated] = events(services, number, "escalated")
    assert escalated.data == {"from": "yang_tao", "to": "lin_hui", "reason": "reply_overdue", "step": "director",
                              "level": 2}
    assert case_of(services, number).first_responder_id == case.holder_id  # still accountable (首问)


async def test_urgent_case_escalates_on_minutes_at_night(chat: Chat, services: Services, clock: FixedClock) -> None:
    clock.set(bj(2026, 11, 28, 23, 0))  # Saturday night; duty leader 何伟
    number = await report(chat, 0, "楼道里有很重的煤气味")
    case = case_of(services, number)
    assert case.urgent and case.ack_due == bj(2026, 11, 28, 23, 15)
    for minute in (12, 16, 28, 32, 44, 46, 48, 60, 64):
        at(services, clock, bj(2026, 11, 28, 23, 0) + dt.timedelta(minutes=minute))
    steps = [(e.data["to"], e.data["step"]) for e in events(services, number, "escalated")]
    # Not routable by category: the front desk (徐婷, B 郭欣), then Saturday's duty leader, then the director.
    assert steps == [("guo_xin", "b"), ("he_wei", "duty_leader"), ("lin_hui", "director")]
    reminded = [(e.data["deadline"], e.data["to"]) for e in events(services, number, "reminded")]
    # Each holder is reminded with a quarter of their 15 minutes left; the reply hour too.
    assert reminded == [("ack", ["xu_ting"]), ("ack", ["guo_xin"]), ("ack", ["he_wei"]), ("reply", ["he_wei"]),
                        ("ack", ["lin_hui"])]


async def test_follow_up_asks_once_for_a_rating_and_unsatisfied_reopens(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    resident, worker = chat.resident(1), chat.staff("wang_fang")
    number = await report(chat, 1, "小区路灯不亮")
    case = case_of(services, number)
    await worker.says(f"/ack {case.id}")
    await worker.says(f"/resolve {case.id} 已更换灯泡")
    await resident.inbox()
    at(services, clock, bj(2026, 11, 25, 9, 59))
    assert not [n for n in await resident.inbox() if "回访" in n.text]
    at(services, clock, bj(2026, 11, 25, 10, 0))
    visit = [n for n in await resident.inbox() if "回访" in n.text]
    assert len(visit) == 1 and number in visit[0].text
    at(services, clock, bj(2026, 11, 25, 11, 0))
    assert not [n for n in await resident.inbox() if "回访" in n.text]

    said = await resident.presses(visit[0].action("不满意"))
    assert "不满意" in said.text
    reopened = case_of(services, number)
    assert reopened.state == "reopened" and reopened.holder_id == reopened.first_responder_id
    assert reopened.rating == "unsatisfied" and reopened.reopen_count == 1
    assert len(events(services, number, "followed_up")) == 1


async def test_unrated_case_is_closed_after_the_follow_up(chat: Chat, services: Services, clock: FixedClock) -> None:
    resident, worker = chat.resident(1), chat.staff("wang_fang")
    number = await report(chat, 1, "小区路灯不亮")
    case = case_of(services, number)
    await worker.says(f"/resolve {case.id} 已更换灯泡")
    at(services, clock, bj(2026, 11, 25, 10, 0))
    at(services, clock, bj(2026, 11, 30, 10, 0))  # 72 hours after the follow-up, over the weekend
    assert case_of(services, number).state == "closed"
    [closed] = [n for n in await resident.inbox() if "已结束" in n.text]
    assert closed.action("重新办理") == f"reo:{case.id}"


async def test_digests_skip_the_national_day_week_and_go_out_on_the_adjusted_saturday(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    clock.set(bj(2026, 9, 30, 17, 0))  # the afternoon before the holiday
    staff = {code: chat.staff(code) for code in ("zhang_li", "wang_fang", "lin_hui")}
    number = await report(chat, 0, "楼道灯坏了")  # one working hour: 30 min today, 30 min on 10-08
    assert case_of(services, number).ack_due == bj(2026, 10, 8, 9, 30)
    for speaker in staff.values():
        await speaker.inbox()
    seen: dict[str, list[str]] = {}
    moments = [(day, 8, 45) for day in range(1, 13)] + [(8, 9, 16), (8, 9, 31), (8, 14, 0)]
    for day, hour, minute in sorted(moments):
        at(services, clock, bj(2026, 10, day, hour, minute))
        for code, speaker in staff.items():
            for notice in await speaker.inbox():
                what = ("digest" if notice.text.startswith("早上好") else "reminder" if "时限提醒" in notice.text
                        else "escalated to me" if "已升级由您处理" in notice.text
                        else "escalated away" if "已升级由" in notice.text else notice.text)
                seen.setdefault(f"10-{day:02d} {hour:02d}:{minute:02d}", []).append(f"{code} {what}")
    assert seen == {
        "10-08 08:45": ["zhang_li digest"],
        "10-08 09:16": ["zhang_li reminder"],
        "10-08 09:31": ["zhang_li escalated away", "wang_fang escalated to me"],
        "10-08 14:00": ["wang_fang escalated away", "lin_hui escalated to me"],
        "10-09 08:45": ["lin_hui digest"],
        "10-10 08:45": ["lin_hui digest"],  # the adjusted working Saturday
        "10-12 08:45": ["lin_hui digest"],
    }
    assert [e.data["to"] for e in events(services, number, "escalated")] == ["wang_fang", "lin_hui"]


class FailingChannel:
    channel = "telegram"

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult(ok=False, error="Telegram 500: Internal Server Error")


async def test_director_sees_the_overdue_list_and_dead_notices(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    number = await report(chat, 0, "楼道灯坏了")
    at(services, clock, bj(2026, 11, 23, 11, 5))  # to the B holder
    at(services, clock, bj(2026, 11, 23, 12, 10))  # to the director, who does not acknowledge either
    clock.set(bj(2026, 11, 23, 13, 15))
    director, worker = chat.staff("lin_hui"), chat.staff("zhang_li")
    assert number in (await director.says("/overdue")).text
    assert "仅供服务中心主任" in (await worker.says("/overdue")).text

    with UnitOfWork(services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(t.Person.code == "zhao_min")).one()
        ensure_identity(uow.session, "telegram", "900001", clock.now(), person=person)
        tell(uow.session, clock.now(), "watch.digest_empty", person=person)
        uow.commit()
    flaky = OutboxSender(services.engine, {"telegram": FailingChannel()}, clock, max_attempts=2)
    await flaky.drain()
    clock.advance(dt.timedelta(minutes=5))
    await flaky.drain()
    dead = (await director.says("/dead")).text
    assert "赵敏" in dead and "Telegram 500" in dead and "2 次" in dead

    at(services, clock, bj(2026, 11, 24, 8, 31))
    digest = [n.text for n in await director.inbox() if "社区超时工单" in n.text]
    assert len(digest) == 1 and number in digest[0] and "Telegram 500" in digest[0]
