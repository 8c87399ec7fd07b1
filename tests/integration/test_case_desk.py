"""The case desk end to end through the pipeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import Services
from handlers.cases import lifecycle
from handlers.errors import NotFound
from handlers.registry.loader import load_registry
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests import district
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


def _case(services: Services, number: str) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()


def _person(services: Services, person_id: int | None) -> t.Person:
    with UnitOfWork(services.engine) as uow:
        person = uow.session.get(t.Person, person_id)
        assert person is not None
        return person


def _count(services: Services, model: type) -> int:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalar(select(func.count()).select_from(model)) or 0


async def test_report_gets_number_accountable_person_and_deadline(chat: Chat, services: Services) -> None:
    said = await chat.resident(0).says("3单元楼道的灯坏了三天了")
    match = NUMBER.search(said.text)
    assert match, said.text
    case = _case(services, match.group(0))
    holder = _person(services, case.holder_id)
    assert holder.name in said.text
    assert case.kind == "service_request" and case.category == "facilities"
    assert case.state == "assigned"
    assert case.ack_due < case.reply_due < case.resolve_due
    # The deadline is stored on the case and shown in the first answer (Beijing time).
    local_reply = case.reply_due + dt.timedelta(hours=8)
    assert f"{local_reply.month}月{local_reply.day}日" in said.text


async def test_whole_journey_ack_transfer_reply_resolve_rate(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    said = await resident.says("楼道灯坏了，晚上很黑")
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    worker_person = _person(services, case.holder_id)
    worker = chat.staff(worker_person.code)
    arrived = await worker.inbox()
    assert len(arrived) == 1 and case.number in arrived[0].text
    assert resident_phone_shown(services, case, arrived[0].text)

    await worker.presses(arrived[0].action("签收"))
    told = await resident.inbox()
    assert any("签收" in n.text and worker_person.name in n.text for n in told)
    assert _case(services, case.number).first_responder_id == worker_person.id

    with UnitOfWork(services.engine) as uow:
        post = uow.session.scalars(select(t.Post).where(t.Post.kind == "specialist").order_by(t.Post.code)).first()
        assert post is not None
        post_code, post_name, specialist_id = post.code, post.name, post.a_holder_id
    picked = await worker.presses(f"trf:{case.id}")
    assert post_name in picked.text or any(post_name == b.label for r in picked.replies for row in r.buttons for b in row)
    await worker.presses(f"trf:{case.id}:{post_code}")
    await worker.says("需要专干协助")
    moved = _case(services, case.number)
    assert moved.post_id is not None and moved.holder_id == specialist_id
    assert moved.first_responder_id == worker_person.id  # 首问负责: still accountable
    assert moved.reply_due == case.reply_due  # deadlines do not reset on transfer
    told = await resident.inbox()
    assert any(post_name in n.text and worker_person.name in n.text for n in told)

    specialist = chat.staff(_person(services, specialist_id).code)
    assert any(case.number in n.text for n in await specialist.inbox())
    await specialist.says(f"/reply {case.id} 明天上午安排电工更换")
    await specialist.says(f"/resolve {case.id} 已更换")
    told = await resident.inbox()
    assert any("明天上午安排电工更换" in n.text for n in told)
    resolved = [n for n in told if "已办结" in n.text]
    assert resolved
    first_responder_heard = await worker.inbox()
    assert any("答复" in n.text for n in first_responder_heard)
    assert any("办结" in n.text for n in first_responder_heard)

    said = await resident.presses(resolved[0].action("满意"))
    assert "谢谢" in said.text
    final = _case(services, case.number)
    assert final.state == "closed" and final.rating == "satisfied"
    with UnitOfWork(services.engine) as uow:
        actions = [e.action for e in uow.session.scalars(
            select(t.CaseEvent).where(t.CaseEvent.case_id == case.id).order_by(t.CaseEvent.seq))]
    # The specialist's reply counts as their acknowledgement of the transferred case.
    assert actions == ["created", "assigned", "acknowledged", "transferred", "acknowledged", "replied",
                       "resolved", "rated"]


def resident_phone_shown(services: Services, case: t.Case, text: str) -> bool:
    with UnitOfWork(services.engine) as uow:
        resident = uow.session.get(t.Resident, case.resident_id)
        assert resident is not None
        return bool(resident.phone) and resident.phone in text


async def test_unsatisfied_rating_reopens_to_the_first_responder(chat: Chat, services: Services) -> None:
    resident = chat.resident(1)
    case = _case(services, NUMBER.search((await resident.says("小区路灯不亮")).text).group(0))  # type: ignore[union-attr]
    worker = chat.staff(_person(services, case.holder_id).code)
    await worker.says(f"/ack {case.id}")
    await worker.says(f"/resolve {case.id} 修好了")
    said = await resident.presses(f"rate:{case.id}:u")
    assert "不满意" in said.text
    reopened = _case(services, case.number)
    assert reopened.state == "reopened" and reopened.reopen_count == 1
    assert reopened.holder_id == reopened.first_responder_id
    await resident.says("还是不亮")
    assert any("还是不亮" in n.text for n in await worker.inbox())


async def test_resident_sees_only_their_own_cases(chat: Chat, services: Services) -> None:
    mine = NUMBER.search((await chat.resident(0).says("电梯坏了")).text).group(0)  # type: ignore[union-attr]
    other = chat.resident(1)
    said = await other.says(f"/status {mine}")
    assert "没有找到" in said.text
    said = await other.presses(f"rate:{_case(services, mine).id}:s")
    assert "没有找到" in said.text
    assert _case(services, mine).rating is None


async def test_staff_cannot_act_on_a_case_that_is_not_theirs(chat: Chat, services: Services) -> None:
    case = _case(services, NUMBER.search((await chat.resident(0).says("电梯坏了")).text).group(0))  # type: ignore[union-attr]
    with UnitOfWork(services.engine) as uow:
        post = uow.session.get(t.Post, case.post_id)
        assert post is not None
        stranger = uow.session.scalars(
            select(t.Person).where(t.Person.id.not_in([post.a_holder_id, post.b_holder_id]),
                                   t.Person.roles == "grid_worker")).first()
        assert stranger is not None
        code = stranger.code
    said = await chat.staff(code).presses(f"ack:{case.id}")
    # They do not learn the case exists: the same answer a resident gets for a case not theirs.
    assert said.text == (await chat.resident(1).presses(f"sts:{case.id}")).text == f"没有找到 {case.id}。请检查编号。"
    assert _case(services, case.number).state == "assigned"


def _events_of(services: Services, case_id: int | None) -> list[str]:
    with UnitOfWork(services.engine) as uow:
        return [e.action for e in uow.session.scalars(
            select(t.CaseEvent).where(t.CaseEvent.case_id == case_id).order_by(t.CaseEvent.seq))]


async def test_staff_of_another_community_get_not_found_on_every_path(
        chat: Chat, services: Services, tmp_path: Path) -> None:
    with UnitOfWork(services.engine) as uow:
        load_registry(uow.session, district.write(tmp_path / "district.yaml", district.district()),
                      services.clock.now())
        uow.commit()
    case = _case(services, NUMBER.search((await chat.resident(0).says("电梯坏了")).text).group(0))  # type: ignore[union-attr]
    number, cid = case.number, case.id
    neighbour = chat.resident(1)  # a resident of the same community whose case it is not
    # The other community's director and front desk handle every case of their own community.
    for code in (district.person_id("lin_hui"), district.person_id("guo_xin")):
        outsider = chat.staff(code)
        for ref, says in (
            (number, [f"/case {number}", f"/ack {number}", f"/reply {number} 已处理",
                      f"/transfer {number} front_desk 转前台", f"/transfer {number}",
                      f"/resolve {number} 已修好", f"/return {number} 不归我们", f"/reply {number}"]),
            (str(cid), [f"/case {cid}", f"/ack {cid}"]),
        ):
            resident_gets = (await neighbour.says(f"/status {ref}")).text
            assert resident_gets == f"没有找到 {ref}。请检查编号。"
            for text in says:
                assert (await outsider.says(text)).text == resident_gets, text
        resident_gets = (await neighbour.presses(f"sts:{cid}")).text
        for action in (f"case:{cid}", f"ack:{cid}", f"rep:{cid}", f"trf:{cid}", f"trf:{cid}:front_desk",
                       f"res:{cid}", f"ret:{cid}"):
            assert (await outsider.presses(action)).text == resident_gets, action
    # What was sent with the case (the web chat's attachments and photos) is not theirs either.
    with UnitOfWork(services.engine) as uow:
        director = uow.session.scalars(
            select(t.Person).where(t.Person.code == district.person_id("lin_hui"))).one()
        with pytest.raises(NotFound):
            lifecycle.for_viewer(uow.session, number, person=director)
    assert _case(services, number).state == "assigned"
    assert _events_of(services, cid) == ["created", "assigned"]


async def test_a_stale_prompt_or_button_after_a_transfer_gets_not_found(chat: Chat, services: Services) -> None:
    case = _case(services, NUMBER.search((await chat.resident(0).says("电梯坏了")).text).group(0))  # type: ignore[union-attr]
    worker = chat.staff(_person(services, case.holder_id).code)
    said = await worker.presses(f"res:{case.id}")
    assert said.replies[0].expects_text
    await chat.staff("lin_hui").says(f"/transfer {case.number} mediation 转调解")
    gone = f"没有找到 {case.id}。请检查编号。"
    assert (await worker.says("已修好")).text == gone
    assert (await worker.presses(f"ack:{case.id}")).text == gone
    assert _case(services, case.number).state == "transferred"


async def test_return_goes_to_front_desk_and_keeps_the_clock(chat: Chat, services: Services) -> None:
    case = _case(services, NUMBER.search((await chat.resident(0).says("电梯坏了")).text).group(0))  # type: ignore[union-attr]
    worker = chat.staff(_person(services, case.holder_id).code)
    await worker.says(f"/return {case.id} 这是物业公司的电梯，不归网格管")
    returned = _case(services, case.number)
    with UnitOfWork(services.engine) as uow:
        post = uow.session.get(t.Post, returned.post_id)
        assert post is not None and post.kind == "front_desk"
        front_desk = uow.session.get(t.Person, returned.holder_id)
        assert front_desk is not None
    assert returned.state == "returned"
    assert (returned.dispatched_at, returned.ack_due, returned.resolve_due) == (
        case.dispatched_at, case.ack_due, case.resolve_due)
    desk = chat.staff(front_desk.code)
    notices = await desk.inbox()
    assert any("退回" in n.text and case.number in n.text for n in notices)


async def test_urgent_alerts_the_duty_leader_and_tells_resident_to_call(chat: Chat, services: Services) -> None:
    said = await chat.resident(0).says("楼道里有很重的煤气味")
    assert "119" in said.text and "120" in said.text
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    assert case.urgent
    assert case.ack_due - case.dispatched_at == dt.timedelta(minutes=15)
    with UnitOfWork(services.engine) as uow:
        alerts = uow.session.scalars(select(t.Outbox).where(t.Outbox.case_id == case.id)).all()
    assert any("紧急" in a.text and a.person_id != case.holder_id for a in alerts)


async def test_the_duty_leaders_alert_carries_the_photos_and_informed_copies_do_not(
        chat: Chat, services: Services) -> None:
    from bot.channels.base import Attachment, Incoming
    from storage import media

    resident = chat.resident(0)
    with UnitOfWork(services.engine) as uow:
        photo = media.put(uow.session, b"water on the stairs", "image/jpeg").id
        uow.commit()
    await services.pipeline.handle(Incoming("web", resident.address,
                                            attachments=(Attachment(kind="photo", ref=f"media:{photo}"),)))
    said = await resident.says("楼道里有很重的煤气味")
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(select(t.Outbox).where(t.Outbox.case_id == case.id,
                                                          t.Outbox.person_id.is_not(None))).all()
        sent = {(r.topic, r.person_id == case.holder_id): r.media for r in rows}
    # The holder and the duty leader act on an urgent case: both see the photo.
    assert sent[("case.new_for_staff", True)] == [photo]
    assert sent[("case.urgent_alert", False)] == [photo]
    assert all(m == [] for (topic, _), m in sent.items() if topic == "case.informed")


async def test_staff_read_a_card_in_the_language_they_use_on_their_channel(
        chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    first = _case(services, NUMBER.search((await resident.says("楼道灯坏了，晚上很黑")).text).group(0))  # type: ignore[union-attr]
    holder = _person(services, first.holder_id)
    staff = chat.staff(holder.code)
    await staff.inbox()
    with UnitOfWork(services.engine) as uow:
        ident = uow.session.scalars(select(t.Identity).where(t.Identity.address == f"person:{holder.code}")).one()
        ident.language = "en"  # they last wrote in English there; their profile still says zh-Hans
        uow.commit()
    said = await chat.resident(0).says("3单元门口的路灯也不亮了")
    number = NUMBER.search(said.text).group(0)  # type: ignore[union-attr]
    [card] = [n for n in await staff.inbox() if number in n.text]
    # The frame and the card inside it are in one language: English.
    assert card.text.startswith("New case for you") and "Deadlines: acknowledge" in card.text
    assert "时限" not in card.text and "状态" not in card.text


async def test_complaint_goes_to_mediation_with_grid_worker_informed(chat: Chat, services: Services) -> None:
    said = await chat.resident(0).says("楼上邻居天天半夜噪音扰民，我要投诉")
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    assert case.kind == "complaint"
    with UnitOfWork(services.engine) as uow:
        post = uow.session.get(t.Post, case.post_id)
        assert post is not None and post.kind == "mediation"
        notices = uow.session.scalars(select(t.Outbox).where(t.Outbox.case_id == case.id)).all()
    assert any("知悉" in n.text for n in notices)


async def test_grid_worker_question_answers_the_grid_sign(chat: Chat) -> None:
    said = await chat.resident(0).says("/grid")
    assert "网格员" in said.text and "电话" in said.text


async def test_bad_input_gets_a_clear_message_and_stores_nothing(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    before = _count(services, t.Case)
    assert "空" in (await resident.says("   ")).text
    assert "太长" in (await resident.says("灯" * 100_000)).text
    assert "无法识别" in (await resident.says("\x00\x01\x02binary")).text
    assert _count(services, t.Case) == before


async def test_low_confidence_asks_with_buttons_then_files(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    said = await resident.says("不确定这事归谁管，小区门口的垃圾")
    assert not NUMBER.search(said.text)
    said = await resident.presses(said.action("投诉 / 纠纷"))
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    assert case.kind == "complaint"


async def test_newcomer_binds_by_building_code_then_reports(chat: Chat, services: Services) -> None:
    with UnitOfWork(services.engine) as uow:
        building = uow.session.scalars(select(t.Building).order_by(t.Building.code)).first()
        assert building is not None
        code, name = building.code, building.name
    newcomer = chat.newcomer("web-visitor-1")
    said = await newcomer.says("楼道灯坏了")
    assert any(b.action.startswith("com:") for r in said.replies for row in r.buttons for b in row)
    assert "no such" not in said.text
    said = await newcomer.says("NO-SUCH-BUILDING")
    assert _count(services, t.Resident) == _count(services, t.Resident)
    said = await newcomer.presses(f"bind:{code}")
    assert name in said.text
    said = await newcomer.says("楼道灯坏了")
    assert NUMBER.search(said.text)


async def test_the_case_card_says_what_the_resident_sent(chat: Chat, services: Services) -> None:
    from bot.channels.base import Attachment, Incoming
    from handlers.cases import lifecycle

    resident = chat.resident(0)
    sent = (Attachment(kind="photo", ref="media:1"), Attachment(kind="photo", ref="AgACAgIAAx0"),
            Attachment(kind="location", latitude=26.5694, longitude=106.7175, ref="中南小区东门"),
            Attachment(kind="location", latitude=26.5686, longitude=106.7182))
    for attachment in sent:
        await services.pipeline.handle(Incoming("web", resident.address, attachments=(attachment,)))
    said = await resident.says("楼道灯坏了，晚上很黑")
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    arrived = await chat.staff(_person(services, case.holder_id).code).inbox()
    assert "居民发来：照片 2 张 · 位置 中南小区东门 · 位置 26.56860, 106.71820" in arrived[0].text

    with UnitOfWork(services.engine) as uow:
        row = uow.session.get(t.Case, case.id)
        assert row is not None
        assert "居民發來：照片 2 張 · 位置 中南小区东门" in lifecycle.case_card(uow.session, row, "zh-Hant", with_contact=False)
        english = lifecycle.case_card(uow.session, row, "en", with_contact=False)
        assert "Sent by the resident: 2 photo(s) · location 中南小区东门 · location 26.56860, 106.71820" in english
        # Without contact details the card has no empty line where they would be.
        assert "\n\n" not in english

    plain = await chat.resident(1).says("小区门口垃圾没人清")
    other = _case(services, NUMBER.search(plain.text).group(0))  # type: ignore[union-attr]
    with UnitOfWork(services.engine) as uow:
        row = uow.session.get(t.Case, other.id)
        assert row is not None
        card = lifecycle.case_card(uow.session, row, "zh-Hans", with_contact=True)
        assert "居民发来" not in card and "\n\n" not in card and "居民：" in card


async def test_the_staff_card_carries_the_kept_photos(chat: Chat, services: Services) -> None:
    from bot.channels.base import Attachment, Incoming
    from handlers.cases.lifecycle import MAX_CARD_MEDIA
    from storage import media

    resident = chat.resident(0)
    with UnitOfWork(services.engine) as uow:
        ids = [media.put(uow.session, f"photo {n}".encode(), "image/jpeg").id or 0
               for n in range(MAX_CARD_MEDIA + 1)]
        uow.commit()
    # A photo known only by the platform's reference, and a location, are not pictures to send.
    sent = [Attachment(kind="photo", ref="AgACAgIAAx0"), Attachment(kind="location", ref="东门")]
    sent += [Attachment(kind="photo", ref=f"media:{i}") for i in ids]
    for attachment in sent:
        await services.pipeline.handle(Incoming("web", resident.address, attachments=(attachment,)))
    said = await resident.says("楼道灯坏了，晚上很黑")
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    plain = await chat.resident(1).says("小区门口垃圾没人清")
    other = _case(services, NUMBER.search(plain.text).group(0))  # type: ignore[union-attr]

    with UnitOfWork(services.engine) as uow:
        def media_of(c: t.Case, person_id: int | None) -> list[list[int]]:
            return [r.media for r in uow.session.scalars(
                select(t.Outbox).where(t.Outbox.case_id == c.id, t.Outbox.person_id == person_id))]

        # The first five kept photos, oldest first, on the card to the case's holder; the
        # resident's own notices carry none.
        assert media_of(case, case.holder_id) == [ids[:MAX_CARD_MEDIA]]
        assert all(m == [] for m in media_of(case, None))
        assert media_of(other, other.holder_id) == [[]]
