"""What a resident is told when their case is escalated: the deadline that was actually missed,
and the new holder by their own post (covering another as its B holder said so), on SQLite and
PostgreSQL with the real watch on a simulated clock."""

from __future__ import annotations

from bot.app import Services
from storage.clock import FixedClock
from tests.chat import Chat
from tests.integration.test_scheduler import at, bj, case_of, events, report


async def test_an_acknowledged_then_transferred_case_escalates_for_the_deadline_it_missed(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    resident, worker = chat.resident(0), chat.staff("zhang_li")
    number = await report(chat, 0, "3单元楼道的灯坏了三天了")  # Monday 10:00; acknowledge by 11:00
    case = case_of(services, number)
    clock.set(bj(2026, 11, 23, 10, 10))
    await worker.says(f"/ack {case.id}")
    clock.set(bj(2026, 11, 23, 10, 20))
    await worker.says(f"/transfer {case.id} G02 楼栋属于第二网格")
    await resident.inbox()

    # The acknowledge deadline was met: passing it moves nothing and tells the resident nothing.
    at(services, clock, bj(2026, 11, 23, 11, 1))
    at(services, clock, bj(2026, 11, 23, 16, 0))
    assert events(services, number, "escalated") == []
    assert not [n for n in await resident.inbox() if "升级" in n.text]

    # The reply deadline (Tuesday 17:30) is missed: that is what the resident hears.
    at(services, clock, bj(2026, 11, 24, 17, 31))
    [escalated] = events(services, number, "escalated")
    assert escalated.data["reason"] == "reply_overdue"
    [told] = [n for n in await resident.inbox() if "升级" in n.text]
    assert "未能按时答复" in told.text and "签收" not in told.text
    assert "林慧（服务中心主任）" in told.text


async def test_the_new_holder_is_named_by_their_own_post_and_the_post_they_cover(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    resident = chat.resident(0)
    number = await report(chat, 0, "3单元楼道的灯坏了三天了")  # 第一网格: A 张丽, B 王芳
    await resident.inbox()
    at(services, clock, bj(2026, 11, 23, 11, 1))  # nobody acknowledged: the B holder takes it
    [told] = [n for n in await resident.inbox() if "升级" in n.text]
    assert number in told.text and "未能按时签收" in told.text
    # 王芳 is the A holder of the second grid and covers the first one as its B holder.
    assert "王芳（第二网格网格员，代第一网格网格员）" in told.text


async def test_the_wording_follows_the_residents_language(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    resident = chat.resident(0)
    await resident.says("The stairwell light in unit 3 has been broken for three days")
    await resident.inbox()
    at(services, clock, bj(2026, 11, 23, 11, 1))
    [told] = [n for n in await resident.inbox() if "escalated" in n.text]
    assert "could not acknowledge" in told.text
    assert "王芳 (第二网格网格员, covering for 第一网格网格员)" in told.text
