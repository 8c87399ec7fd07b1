"""The deadline watch as people notice it: reminders, escalations, follow-ups and digests, on a
simulated clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from sqlalchemy import delete, insert, select, text

from bot.app import Services
from bot.channels.base import Outgoing, SendResult
from bot.sender import OutboxSender
from bot.worker import Scheduler, scheduler_of
from handlers.cases import lifecycle
from handlers.deadlines import WorkingCalendar
from handlers.notify import ensure_identity, tell
from handlers.watch import escalation
from storage import scheduler
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


async def test_the_escalated_card_carries_the_photos_in_the_new_holders_language(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    from bot.channels.base import Attachment, Incoming
    from storage import media

    resident, b_holder = chat.resident(0), chat.staff("wang_fang")
    with UnitOfWork(services.engine) as uow:
        photo = media.put(uow.session, b"the dark stairwell", "image/jpeg").id
        ident = uow.session.scalars(select(t.Identity).where(t.Identity.address == "person:wang_fang")).one()
        ident.language = "en"
        uow.commit()
    await services.pipeline.handle(Incoming("web", resident.address,
                                            attachments=(Attachment(kind="photo", ref=f"media:{photo}"),)))
    number = await report(chat, 0, "3单元楼道的灯坏了三天了")
    at(services, clock, bj(2026, 11, 23, 10, 46))  # the holder's reminder
    at(services, clock, bj(2026, 11, 23, 11, 1))
    [moved] = [n for n in await b_holder.inbox() if "escalated to you" in n.text]
    assert number in moved.text and "not acknowledged" in moved.text
    assert "Sent by the resident: 1 photo(s)" in moved.text and "Deadlines: acknowledge" in moved.text
    with UnitOfWork(services.engine) as uow:
        b_id = uow.session.scalars(select(t.Person.id).where(t.Person.code == "wang_fang")).one()
        rows = uow.session.scalars(select(t.Outbox).where(t.Outbox.person_id == b_id,
                                                          t.Outbox.topic == "watch.escalated_to_you")).all()
        reminders = uow.session.scalars(select(t.Outbox).where(t.Outbox.topic == "watch.remind")).all()
    assert [r.media for r in rows] == [[photo]]
    # The holder saw the photo with the new case; their reminder does not send it again.
    assert [r.media for r in reminders] == [[]]


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
    texts: dict[tuple[int, int, str], str] = {}
    moments = [(day, 8, 45) for day in range(1, 13)] + [(8, 9, 16), (8, 9, 31), (8, 14, 0)]
    for day, hour, minute in sorted(moments):
        at(services, clock, bj(2026, 10, day, hour, minute))
        for code, speaker in staff.items():
            for notice in await speaker.inbox():
                texts[(day, hour, code)] = notice.text
                what = ("digest" if notice.text.startswith("早上好") else "reminder" if "时限提醒" in notice.text
                        else "september" if "2026-09-01 至 2026-09-30" in notice.text
                        else "escalated to me" if "已升级由您处理" in notice.text
                        else "escalated away" if "已升级由" in notice.text else notice.text)
                seen.setdefault(f"10-{day:02d} {hour:02d}:{minute:02d}", []).append(f"{code} {what}")
    assert seen == {
        "10-08 08:45": ["zhang_li digest", "lin_hui september"],
        "10-08 09:16": ["zhang_li reminder"],
        "10-08 09:31": ["zhang_li escalated away", "wang_fang escalated to me"],
        "10-08 14:00": ["wang_fang escalated away", "lin_hui escalated to me"],
        "10-09 08:45": ["lin_hui digest"],
        "10-10 08:45": ["lin_hui digest"],  # the adjusted working Saturday
        "10-12 08:45": ["lin_hui digest"],
    }
    assert [e.data["to"] for e in events(services, number, "escalated")] == ["wang_fang", "lin_hui"]
    # October's first working day is the 8th, after the holiday: the director gets September's
    # figures then, once (the case reported on 09-30 is its only case, not yet answered).
    assert "合计：1 件｜响应率 —｜按时办结率 —｜解决率 0.0%（0/1）｜满意率 —｜超时 0 件" in texts[(8, 8, "lin_hui")]


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


# --------------------------------------------------------------------------- restarts and the full pass

ALL_KINDS = {"remind_ack", "escalate_ack", "remind_reply", "escalate_reply", "remind_resolve", "escalate_resolve"}


def bulk_cases(services: Services, count: int, ack_due: dt.datetime) -> list[int]:
    """`count` cases on post G01 (张丽, B 王芳) written straight into the tables, without events:
    as if they were there before any scheduler ran. Dispatched an hour before `ack_due`."""
    with UnitOfWork(services.engine) as uow:
        session = uow.session
        community = session.scalars(select(t.Community)).one()
        resident = session.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        post = session.scalars(select(t.Post).where(t.Post.code == "G01")).one()
        assert resident is not None
        start = session.scalar(select(t.Case.id).order_by(t.Case.id.desc()).limit(1)) or 0
        session.execute(insert(t.Case), [{
            "number": f"ZN-BULK-{start + n:05d}", "community_id": community.id, "kind": "service_request",
            "category": "facilities", "urgent": False, "text": f"楼道灯坏了 #{n}", "lang": "zh-Hans",
            "channel": "web", "resident_id": resident.id, "state": "assigned", "post_id": post.id,
            "holder_id": post.a_holder_id, "created_at": ack_due - dt.timedelta(hours=1),
            "dispatched_at": ack_due - dt.timedelta(hours=1), "ack_due": ack_due,
            "reply_due": ack_due + dt.timedelta(days=1), "resolve_due": ack_due + dt.timedelta(days=5),
            "rating_comment": "", "reopen_count": 0, "escalation_level": 0,
        } for n in range(count)])
        ids = list(session.scalars(select(t.Case.id).where(t.Case.id > start).order_by(t.Case.id)))
        uow.commit()
    assert len(ids) == count
    return ids


def planned(services: Services) -> dict[int, set[str]]:
    """The kinds of the pending due actions, by case."""
    with UnitOfWork(services.engine) as uow:
        found: dict[int, set[str]] = {}
        for action in uow.session.scalars(select(t.DueAction).where(t.DueAction.state == "pending",
                                                                    t.DueAction.case_id.is_not(None))):
            found.setdefault(action.case_id or 0, set()).add(action.kind)
        return found


def pending_keys(services: Services) -> set[str]:
    with UnitOfWork(services.engine) as uow:
        return set(uow.session.scalars(select(t.DueAction.key).where(t.DueAction.state == "pending")))


def forget_actions(services: Services, case_id: int) -> None:
    with UnitOfWork(services.engine) as uow:
        uow.session.execute(delete(t.DueAction).where(t.DueAction.case_id == case_id))
        uow.commit()


def full_cursors(services: Services) -> dict[str, int]:
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(select(t.WatchCursor).where(t.WatchCursor.name.startswith("full:")))
        return {r.name: r.last_id for r in rows}


def full_cursor_name(services: Services, policy: escalation.WatchPolicy) -> str:
    with UnitOfWork(services.engine) as uow:
        return escalation.full_cursor_name(uow.session, policy)


async def test_cases_present_before_the_first_start_are_planned_by_its_first_tick(
        services: Services, clock: FixedClock) -> None:
    ids = bulk_cases(services, 5, bj(2026, 11, 23, 11, 0))
    assert not set(planned(services)) & set(ids)
    watch(services).tick()
    assert {i: planned(services).get(i) for i in ids} == {i: ALL_KINDS for i in ids}
    assert full_cursors(services) == {full_cursor_name(services, watch(services).policy): escalation.FULL_DONE}


async def test_a_restart_replans_only_when_the_policy_changed(services: Services, clock: FixedClock) -> None:
    ids = bulk_cases(services, 4, bj(2026, 11, 23, 11, 0))
    policy = watch(services).policy
    watch(services).tick()
    before = pending_keys(services)
    forget_actions(services, ids[0])  # so that a re-plan would show
    # While no scheduler runs, 张丽 acknowledges another case: that change is in its events.
    forget_actions(services, ids[1])
    with UnitOfWork(services.engine) as uow:
        case = uow.session.get(t.Case, ids[1])
        zhang_li = uow.session.scalars(select(t.Person).where(t.Person.code == "zhang_li")).one()
        assert case is not None
        lifecycle.acknowledge(uow.session, case, zhang_li, clock.now())
        uow.commit()

    clock.advance(dt.timedelta(minutes=1))
    Scheduler(services.engine, clock, policy).tick()  # a new process, same policy
    now = planned(services)
    assert ids[0] not in now  # not re-planned: nothing about it changed
    assert now[ids[1]] == {"remind_reply", "escalate_reply", "remind_resolve", "escalate_resolve"}
    assert now[ids[2]] == now[ids[3]] == ALL_KINDS

    changed = dataclasses.replace(policy, reminder_lead=0.5)
    Scheduler(services.engine, clock, changed).tick()  # a new process with another reminder lead
    assert planned(services)[ids[0]] == ALL_KINDS
    # Planning is idempotent: every other case keeps the actions it had, once each.
    assert pending_keys(services) - before == set()
    assert full_cursors(services) == {full_cursor_name(services, changed): escalation.FULL_DONE}


async def test_the_full_pass_goes_in_chunks_with_due_work_in_between(
        services: Services, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escalation, "PLAN_CHUNK", 3)
    [late] = bulk_cases(services, 1, bj(2026, 11, 23, 9, 30))  # overdue at 10:00, in the first chunk
    later = bulk_cases(services, 10, bj(2026, 11, 23, 11, 0))
    policy = watch(services).policy
    name = full_cursor_name(services, policy)
    cursor_at_escalation: list[int] = []

    def escalated(action: t.DueAction) -> None:
        if action.kind == "escalate_ack":
            with UnitOfWork(services.engine) as uow:
                cursor_at_escalation.append(scheduler.cursor(uow.session, name))

    report = escalation.tick(services.engine, clock.now(), policy, after_commit=escalated)
    # Escalated right after the first of four chunks (3 + 3 + 3 + 2 cases), in the same tick.
    assert cursor_at_escalation == [later[1]]
    assert report.kinds.get("escalate_ack") == 1
    assert [e.data["to"] for e in events(services, case_of_id(services, late).number, "escalated")] == ["wang_fang"]
    assert set(planned(services)) >= set(later) | {late}
    assert full_cursors(services) == {name: escalation.FULL_DONE}


async def test_an_interrupted_full_pass_resumes_where_it_stopped(
        services: Services, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escalation, "PLAN_CHUNK", 3)
    ids = bulk_cases(services, 8, bj(2026, 11, 23, 11, 0))
    policy = watch(services).policy
    offered, more = escalation.plan_full_chunk(services.engine, clock.now(), policy)
    assert (offered, more) == (3 * len(ALL_KINDS), True)
    assert set(planned(services)) == set(ids[:3])
    assert full_cursors(services) == {full_cursor_name(services, policy): ids[2]}
    # The process dies here. The next one goes on after the cursor: what the first chunk planned
    # is not gone over again (its plans are removed here to make that visible).
    forget_actions(services, ids[0])
    Scheduler(services.engine, clock, policy).tick()
    assert set(planned(services)) == set(ids[1:])
    assert full_cursors(services) == {full_cursor_name(services, policy): escalation.FULL_DONE}


async def test_a_finished_full_pass_removes_the_cursors_of_earlier_passes(
        services: Services, clock: FixedClock) -> None:
    with UnitOfWork(services.engine) as uow:
        for name, last in (("full:" + "0" * 27, escalation.FULL_DONE), ("full:" + "1" * 27, 7), ("plan", 0)):
            uow.session.add(t.WatchCursor(name=name, last_id=last, updated_at=clock.now()))
        uow.commit()
    ids = bulk_cases(services, 2, bj(2026, 11, 23, 11, 0))
    watch(services).tick()
    assert set(planned(services)) >= set(ids)
    assert full_cursors(services) == {full_cursor_name(services, watch(services).policy): escalation.FULL_DONE}
    with UnitOfWork(services.engine) as uow:
        assert uow.session.get(t.WatchCursor, "plan") is not None


async def test_a_failing_action_is_tried_once_per_tick_during_a_long_full_pass(
        services: Services, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(escalation, "PLAN_CHUNK", 2)
    [late] = bulk_cases(services, 1, bj(2026, 11, 23, 9, 30))
    bulk_cases(services, 9, bj(2026, 11, 23, 11, 0))
    real = escalation.perform

    def perform(session, action, now, policy):  # type: ignore[no-untyped-def]
        if action.kind == "escalate_ack":
            raise RuntimeError("broken case")
        return real(session, action, now, policy)

    monkeypatch.setattr(escalation, "perform", perform)
    report = watch(services).tick()
    assert report.failed == 1
    with UnitOfWork(services.engine) as uow:
        action = uow.session.scalars(select(t.DueAction).where(t.DueAction.case_id == late,
                                                               t.DueAction.kind == "escalate_ack")).one()
        assert (action.state, action.attempts) == ("pending", 1)


async def test_a_tick_moves_on_while_another_process_holds_the_planner_lock(
        services: Services, clock: FixedClock) -> None:
    if not services.settings.database_url.startswith("postgresql"):
        pytest.skip("the planner lock is PostgreSQL's; SQLite serialises writers")
    ids = bulk_cases(services, 3, bj(2026, 11, 23, 11, 0))
    policy = watch(services).policy
    with services.engine.connect() as other, other.begin():
        other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": scheduler.PLANNER_LOCK})
        assert escalation.plan_full_chunk(services.engine, clock.now(), policy) == (0, False)
        watch(services).tick()  # returns: the pass is the lock holder's to do
        assert not set(planned(services)) & set(ids)
    watch(services).tick()
    assert set(planned(services)) >= set(ids)


def case_of_id(services: Services, case_id: int) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.get(t.Case, case_id)
        assert case is not None
        return case


async def test_a_morning_with_nothing_to_report_stores_nothing(services: Services, clock: FixedClock) -> None:
    def stored() -> tuple[int, int]:
        with UnitOfWork(services.engine) as uow:
            return (len(uow.session.scalars(select(t.Identity)).all()),
                    len(uow.session.scalars(select(t.Outbox)).all()))

    before = stored()
    at(services, clock, bj(2026, 11, 24, 8, 31))  # Tuesday, after the digest time; no cases at all
    # Nobody is written to, and no one gets a web inbox just to have their language looked up.
    assert stored() == before == (0, 0)
