"""取消 / 算了 / never mind is never a case, and residents withdraw their own cases: through the
chat, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

import nlu
from bot.app import Services
from bot.worker import scheduler_of
from handlers.figures import tally as figures_module
from handlers.registry import directory
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


def _case(services: Services, number: str) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()


def _cases(services: Services) -> int:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalar(select(func.count()).select_from(t.Case)) or 0


def _events(services: Services, number: str) -> list[t.CaseEvent]:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        return list(uow.session.scalars(select(t.CaseEvent).where(t.CaseEvent.case_id == case.id)
                                        .order_by(t.CaseEvent.seq)))


async def _file(chat: Chat, index: int, text: str) -> str:
    said = await chat.resident(index).says(text)
    match = NUMBER.search(said.text)
    assert match, said.text
    return match.group(0)


# --------------------------------------------------------------------------- the phrases


@pytest.mark.parametrize("text", ["取消", "算了，不用了", "撤回", "撤銷", "不用了。", "取消吧！", "算了😅",
                                  "cancel", "Never mind", "never mind, thanks", "CANCEL!", "沒事了"])
def test_these_whole_messages_are_cancels(text: str) -> None:
    assert nlu.is_cancel(text)


@pytest.mark.parametrize("text", ["我想取消预约的体检", "取消 ZN-20261121-0007", "不用谢", "谢谢", "好的", "👍",
                                  "cancel my gym booking", "canceled", "", "取消" + " " * 200 + "我要投诉物业"])
def test_these_are_not(text: str) -> None:
    assert not nlu.is_cancel(text)


# --------------------------------------------------------------------------- cancel is no case


async def test_a_cancel_with_nothing_to_cancel_files_nothing(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    for text, answer in (("取消", "没有需要取消"), ("算了，不用了", "没有需要取消"), ("撤銷", "沒有需要取消"),
                         ("never mind", "nothing to cancel")):
        said = await resident.says(text)
        assert answer in said.text and not NUMBER.search(said.text), text
    assert _cases(services) == 0
    # A message that merely mentions cancelling something is a request like any other.
    number = await _file(chat, 0, "我想取消预约的体检")
    assert _case(services, number).state == "assigned"


async def test_a_cancel_drops_the_question_asked_and_files_nothing(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    asked = await resident.says("不确定 楼道灯坏了")  # an unsure reading: request, complaint or proposal?
    request_button = asked.action("办事 / 求助")
    said = await resident.says("算了")
    assert "已取消" in said.text
    late = await resident.presses(request_button)
    assert "已过期" in late.text
    assert _cases(services) == 0

    # Staff drop a note they were asked for the same way.
    number = await _file(chat, 0, "楼道灯坏了")
    case = _case(services, number)
    worker = chat.staff("zhang_li")
    await worker.presses(f"res:{case.id}")  # asks for the note of the resolution
    said = await worker.says("取消")
    assert "已取消" in said.text
    assert _case(services, number).state == "assigned"
    assert [e.action for e in _events(services, number)] == ["created", "assigned"]


# --------------------------------------------------------------------------- withdrawing


async def test_cancel_right_after_filing_withdraws_that_case_and_tells_the_holder(
        chat: Chat, services: Services) -> None:
    resident, worker = chat.resident(0), chat.staff("zhang_li")
    number = await _file(chat, 0, "3单元楼道的灯坏了三天了")
    assert any(number in n.text for n in await worker.inbox())
    said = await resident.says("算了，不用了")
    assert number in said.text and "已撤回" in said.text
    case = _case(services, number)
    assert case.state == "closed" and case.closed_at is not None and case.resolved_at is None
    withdrawn = _events(services, number)[-1]
    assert withdrawn.action == "withdrawn" and withdrawn.data["reason"] == "withdrawn_by_resident"
    assert withdrawn.actor_resident_id == case.resident_id
    [told] = [n for n in await worker.inbox() if number in n.text]
    assert "居民已撤回" in told.text and "无需再办理" in told.text
    # The history says why it closed; nobody can take it up any more.
    status = await resident.says(f"/status {number}")
    assert "已结束" in status.text and "居民撤回" in status.text
    assert not [b for r in status.replies for row in r.buttons for b in row]
    refused = await worker.says(f"/ack {case.id}")
    assert "不能这样操作" in refused.text
    refused = await resident.says(f"/reopen {number} 还是要修")
    assert "不能这样操作" in refused.text
    assert _case(services, number).state == "closed"


async def test_a_cancel_ten_minutes_after_filing_withdraws_nothing(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    number = await _file(chat, 0, "楼道灯坏了")
    clock.set(clock.now() + dt.timedelta(minutes=11))
    said = await chat.resident(0).says("取消")
    assert "/withdraw" in said.text
    assert _case(services, number).state == "assigned"
    assert _cases(services) == 1


async def test_the_filing_reply_and_the_case_card_offer_a_withdraw_button(
        chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    filed = await resident.says("楼道灯坏了")
    number = NUMBER.search(filed.text).group(0)  # type: ignore[union-attr]
    said = await resident.presses(filed.action("撤回"))
    assert "已撤回" in said.text and _case(services, number).state == "closed"

    second = await _file(chat, 0, "电梯坏了")
    status = await resident.says(f"/status {second}")
    said = await resident.presses(status.action("撤回"))
    assert second in said.text and _case(services, second).state == "closed"


async def test_withdraw_by_number_and_the_councils_withdraw_both_work(chat: Chat, services: Services) -> None:
    """/withdraw N withdraws a case by its number and a co-signature by a proposal's number."""
    proposal = await chat.resident(0).proposes("建议增设社区图书角")
    resident = chat.resident(1)
    await resident.says(f"/cosign {proposal}")
    number = await _file(chat, 1, "小区路灯不亮")

    said = await resident.says(f"/withdraw {number}")
    assert "已撤回" in said.text and _case(services, number).state == "closed"
    said = await resident.says(f"/withdraw {proposal}")
    assert "共 0 人附议" in said.text

    # A case the council opened in the proposer's name was not filed by them just now: a bare
    # 算了 leaves it alone.
    said = await chat.staff("guo_xin").says(f"/tocase {proposal} service_request 属于办事")
    opened = NUMBER.search(said.text).group(0)  # type: ignore[union-attr]
    said = await chat.resident(0).says("算了")
    assert "没有需要取消" in said.text and _case(services, opened).state == "assigned"

    # Nobody withdraws another resident's case: for them it does not exist.
    number = await _file(chat, 0, "楼道灯坏了")
    said = await chat.resident(1).says(f"/withdraw {number}")
    assert "没有找到" in said.text
    case = _case(services, number)
    said = await chat.resident(1).presses(f"wd:{case.id}")
    assert "没有找到" in said.text
    assert _case(services, number).state == "assigned"


async def test_after_acknowledgement_the_wish_goes_to_the_holder_as_a_note(
        chat: Chat, services: Services) -> None:
    resident, worker = chat.resident(0), chat.staff("zhang_li")
    number = await _file(chat, 0, "楼道灯坏了")
    case = _case(services, number)
    await worker.says(f"/ack {case.id}")
    await worker.inbox()
    said = await resident.says(f"/withdraw {number}")
    assert "已转告承办人" in said.text
    assert _case(services, number).state == "acknowledged"
    assert _events(services, number)[-1].action == "withdrawal_asked"
    [told] = [n for n in await worker.inbox() if number in n.text]
    assert "希望撤回" in told.text
    # A bare 算了 right after that is the same wish: the case stays open.
    said = await resident.says("算了")
    assert "已转告承办人" in said.text and _case(services, number).state == "acknowledged"

    # An urgent case is not closed by a cancel either, acknowledged or not: someone may be in
    # danger, and the duty leader was alerted.
    number = await _file(chat, 1, "楼道里煤气味很重")
    said = await chat.resident(1).says("算了")
    assert "已转告承办人" in said.text
    assert _case(services, number).state == "assigned"


# --------------------------------------------------------------------------- deadlines and figures


async def test_a_withdrawn_case_is_no_longer_watched(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    worker, b_holder = chat.staff("zhang_li"), chat.staff("wang_fang")
    number = await _file(chat, 0, "3单元楼道的灯坏了三天了")  # acknowledge within the hour
    kept = await _file(chat, 0, "电梯坏了")
    await chat.resident(0).presses(f"wd:{_case(services, number).id}")
    await worker.inbox()
    for minutes in (50, 70, 24 * 60 * 8):
        clock.set(dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes))
        scheduler_of(services.background).tick()
    assert [e.action for e in _events(services, number)] == ["created", "assigned", "withdrawn"]
    assert not [n for n in await worker.inbox() + await b_holder.inbox() if number in n.text]
    # The case filed next to it is watched as ever.
    assert "escalated" in [e.action for e in _events(services, kept)]


async def test_a_withdrawn_case_counts_nowhere_in_the_figures(chat: Chat, services: Services) -> None:
    number = await _file(chat, 0, "楼道灯坏了")
    await _file(chat, 1, "小区路灯不亮")
    await chat.resident(0).presses(f"wd:{_case(services, number).id}")
    with UnitOfWork(services.engine) as uow:
        community = directory.community(uow.session, _case(services, number).community_id)
        now = services.clock.now()
        report = figures_module.figures(uow.session, community, dt.date(2026, 11, 1), dt.date(2026, 11, 30),
                                        "community", now)
    assert report.total.cases == 1
    assert (report.total.resolved.done, report.total.resolved.of) == (0, 1)
