"""The WeCom sender against the loopback WeCom: the shared token and its one refresh, members
WeCom cannot reach, its per-member limits, raw UTF-8 JSON, the trusted-IP refusal; and where a
staff notice goes when a person is bound on several channels."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlmodel import col
from wechatpy.exceptions import WeChatClientException

from bot.app import Services
from bot.channels import wecom as wm
from bot.channels.base import Outgoing
from bot.sender import OutboxSender
from handlers import notify
from handlers.watch import escalation
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat
from tests.fakes.serving import serve
from tests.fakes.wecom import PER_MINUTE, FakeWeCom

WORKER = "zhangli"  # 张丽 (zhang_li) in the example community
NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


@pytest.fixture
def fake(clock: FixedClock) -> Iterator[tuple[FakeWeCom, str]]:
    fake = FakeWeCom(clock=clock)
    fake.add_member(WORKER, "张丽", mobile="13800851101")
    fake.add_member("wangfang", "王芳", mobile="13800851102")
    with serve(fake.api_app) as api:
        yield fake, f"{api}/cgi-bin/"


def client_for(fake: FakeWeCom, api: str, clock: FixedClock, tokens: object = None) -> wm.WeComClient:
    return wm.WeComClient(fake.corp_id, fake.secret, api_base=api,
                          tokens=tokens or wm.wc.MemoryTokenStore(now=lambda: clock.now().timestamp()))  # type: ignore[arg-type]


def sender_for(fake: FakeWeCom, api: str, services: Services, clock: FixedClock) -> wm.WeComSender:
    wm.bind_members(services.engine, clock.now())
    return wm.WeComSender(client_for(fake, api, clock), agent_id=fake.agent_id, state=services.state,
                          engine=services.engine,
                          limits=wm.MemberLimits(services.state, now=lambda: clock.now().timestamp()))


def fetches(fake: FakeWeCom) -> int:
    return len([c for c in fake.api_calls if c.path == "gettoken"])


def person(services: Services, code: str) -> t.Person:
    with UnitOfWork(services.engine) as uow:
        found = uow.session.scalars(select(t.Person).where(t.Person.code == code)).one()
        uow.session.expunge(found)
        return found


def tell(services: Services, clock: FixedClock, code: str, text: str = "请处理") -> t.Outbox:
    with UnitOfWork(services.engine) as uow:
        who = uow.session.scalars(select(t.Person).where(t.Person.code == code)).one()
        notify.tell(uow.session, clock.now(), "case.covering", person=who, topic=text)
        uow.commit()
        row = uow.session.scalars(select(t.Outbox).where(t.Outbox.person_id == who.id)
                                  .order_by(col(t.Outbox.id).desc())).first()
        assert row is not None
        uow.session.expunge(row)
        return row


def test_an_expired_or_rejected_token_is_refreshed_once_and_retried_once(
        fake: tuple[FakeWeCom, str], clock: FixedClock) -> None:
    wecom, api = fake
    client = client_for(wecom, api, clock)
    body = {"touser": WORKER, "msgtype": "text", "agentid": wecom.agent_id, "text": {"content": "工单提醒"}}
    client.post_json("message/send", body)
    assert fetches(wecom) == 1
    wecom.expire_tokens()  # 42001 on the next call
    client.post_json("message/send", body)
    assert fetches(wecom) == 2
    wecom.inject(40001, path="message/send")
    wecom.inject(40001, path="message/send")
    with pytest.raises(WeChatClientException) as excinfo:
        client.post_json("message/send", body)
    assert excinfo.value.errcode == 40001 and fetches(wecom) == 3  # one refresh, no recursion
    assert [s.text for s in wecom.seen(WORKER)] == ["工单提醒", "工单提醒"]


def test_processes_share_one_token_through_redis(fake: tuple[FakeWeCom, str], clock: FixedClock,
                                                  redis_url: str, redis_prefix: str) -> None:
    wecom, api = fake
    now = lambda: clock.now().timestamp()
    first = client_for(wecom, api, clock, wm.RedisTokenStore(redis_url, f"{redis_prefix}{wecom.corp_id}", 1, now=now))
    second = client_for(wecom, api, clock, wm.RedisTokenStore(redis_url, f"{redis_prefix}{wecom.corp_id}", 1, now=now))
    body = {"touser": WORKER, "msgtype": "text", "agentid": wecom.agent_id, "text": {"content": "一"}}
    first.post_json("message/send", body)
    second.post_json("message/send", body)
    assert fetches(wecom) == 1


@pytest.mark.parametrize("all_invalid_is_error", [True, False], ids=["81013", "invaliduser"])
def test_a_member_outside_the_visible_range_is_a_failed_notice_that_goes_elsewhere(
        fake: tuple[FakeWeCom, str], services: Services, clock: FixedClock, all_invalid_is_error: bool) -> None:
    wecom, api = fake
    wecom.all_invalid_is_error = all_invalid_is_error
    outbox_sender = OutboxSender(services.engine, {"wecom": sender_for(wecom, api, services, clock),
                                                   "web": services.senders["web"]}, clock)
    wecom.set_visible(WORKER, False)
    lost = tell(services, clock, "zhang_li")
    assert lost.channel == "wecom"
    asyncio.run(outbox_sender.drain())
    with UnitOfWork(services.engine) as uow:
        row = uow.session.get(t.Outbox, lost.id)
        assert row is not None and row.state == t.OutboxState.UNREACHABLE
        community = person(services, "zhang_li").community_id
        dead = escalation.dead_notices(uow.session, community, "zh-Hans")
        assert [(d.id, d.channel, d.recipient) for d in dead] == [(lost.id, "wecom", "张丽")]
        assert "wecom" in dead[0].reason
        # The card is not lost with the member: it waits in 张丽's web inbox.
        again = uow.session.scalars(select(t.Outbox).where(t.Outbox.channel == "web")).all()
        assert [(r.address, r.text) for r in again] == [("person:zhang_li", row.text)]
    assert wecom.seen(WORKER) == []
    assert tell(services, clock, "zhang_li").channel == "web"  # WeCom is no longer tried


async def test_a_case_card_that_reaches_its_holder_nowhere_goes_to_the_b_holder_at_once(
        fake: tuple[FakeWeCom, str], services: Services, clock: FixedClock, chat: Chat) -> None:
    wecom, api = fake
    wecom.all_invalid_is_error = False  # errcode 0 with `invaliduser`: success to the eye
    wecom.set_visible(WORKER, False)  # 张丽 is on WeCom only, and outside the app's visible range
    sender = sender_for(wecom, api, services, clock)
    outbox_sender = OutboxSender(services.engine, {"wecom": sender, "web": services.senders["web"]}, clock)
    resident = chat.resident(0)
    said = await resident.says("3单元楼道的灯坏了三天了")  # post G01: A 张丽, B 王芳
    number = NUMBER.search(said.text).group(0)  # type: ignore[union-attr]
    await outbox_sender.drain()

    # The B holder has the card, with its buttons, and is told why it came to her.
    card = next(c for c in wecom.cards("wangfang") if number in c.text)
    assert "签收" in dict(card.buttons()) and "无法联系到承办人" in card.text
    assert wecom.seen(WORKER) == []
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        holder = uow.session.get(t.Person, case.holder_id)
        assert holder is not None and holder.code == "wang_fang"
        moved = uow.session.scalars(select(t.CaseEvent).where(
            t.CaseEvent.case_id == case.id, t.CaseEvent.action == "escalated")).all()
        assert [(e.data["reason"], e.data["from"], e.data["to"]) for e in moved] == [
            ("holder_unreachable", "zhang_li", "wang_fang")]
    # The resident hears who holds it now, and why.
    told = [n.text for n in await resident.inbox() if number in n.text and "联系不上" in n.text]
    assert len(told) == 1 and "王芳" in told[0]
    # The director's /dead lists the notice WeCom did not deliver, with WeCom's reason.
    dead = (await chat.staff("lin_hui").says("/dead")).text
    line = next(line for line in dead.splitlines() if "张丽" in line and "wecom" in line)
    assert "invaliduser" in line and number in line


def test_a_burst_past_the_per_member_limit_is_merged_into_one_digest_card_and_nothing_is_dropped(
        fake: tuple[FakeWeCom, str], services: Services, clock: FixedClock) -> None:
    wecom, api = fake
    sender = sender_for(wecom, api, services, clock)
    outbox_sender = OutboxSender(services.engine, {"wecom": sender, "web": services.senders["web"]}, clock)
    rows = [tell(services, clock, "zhang_li") for _ in range(PER_MINUTE + 6)]
    asyncio.run(outbox_sender.drain())
    assert wecom.dropped == []
    seen = wecom.seen(WORKER)
    assert len(seen) == PER_MINUTE
    digest = seen[-1]
    assert digest.kind == "card" and f"(+{len(rows) - PER_MINUTE})" in digest.text
    with UnitOfWork(services.engine) as uow:
        states = {uow.session.get(t.Outbox, r.id).state for r in rows}  # type: ignore[union-attr]
    assert states == {t.OutboxState.SENT}
    # Within the same minute, a further notice waits instead of being dropped by WeCom.
    late = tell(services, clock, "zhang_li")
    asyncio.run(outbox_sender.drain())
    assert len(wecom.seen(WORKER)) == PER_MINUTE and wecom.dropped == []
    clock.advance(dt.timedelta(seconds=61))
    with UnitOfWork(services.engine) as uow:
        row = uow.session.get(t.Outbox, late.id)
        assert row is not None and row.state == t.OutboxState.PENDING
        row.next_attempt_at = clock.now()
        uow.commit()
    asyncio.run(outbox_sender.drain())
    assert len(wecom.seen(WORKER)) == PER_MINUTE + 1


def test_cards_go_out_as_raw_utf8_json_and_more_than_six_buttons_as_numbered_text(
        fake: tuple[FakeWeCom, str], services: Services, clock: FixedClock) -> None:
    wecom, api = fake
    sender = sender_for(wecom, api, services, clock)
    buttons = [[{"label": "签收", "action": "ack:1"}, {"label": "答复", "action": "rep:1"}]]
    assert sender.send_sync(Outgoing(1, "wecom", WORKER, "新工单：\n地点：3号楼", buttons)).ok
    sent = [c for c in wecom.api_calls if c.path == "message/send"][-1]
    assert "新工单".encode() in sent.body and b"\\u" not in sent.body  # 40033 otherwise
    assert wecom.cards(WORKER)[-1].buttons() == [("签收", "ack:1"), ("答复", "rep:1")]
    many = [[{"label": f"岗位{i}", "action": f"trf:1:P{i}"}] for i in range(8)]
    assert sender.send_sync(Outgoing(2, "wecom", WORKER, "转给哪个岗位？", many)).ok
    text = wecom.seen(WORKER)[-1]
    assert text.kind == "text" and "① 岗位0" in text.text
    assert wm.number_action(services.state, WORKER, "3") == "trf:1:P2"


def test_an_untrusted_server_ip_is_a_failure_to_retry(fake: tuple[FakeWeCom, str], clock: FixedClock) -> None:
    wecom, api = fake
    wecom.trusted_ips = {"10.0.0.1"}
    result = wm.WeComSender(client_for(wecom, api, clock), agent_id=wecom.agent_id,
                            state=MemoryStateStore()).send_sync(Outgoing(1, "wecom", WORKER, "提醒"))
    assert not result.ok and not result.unreachable and "60020" in result.error


def test_staff_notices_go_to_wecom_first_unless_the_registry_sets_another_order(
        services: Services, clock: FixedClock) -> None:
    wm.bind_members(services.engine, clock.now())
    with UnitOfWork(services.engine) as uow:
        zhang = uow.session.scalars(select(t.Person).where(t.Person.code == "zhang_li")).one()
        notify.ensure_identity(uow.session, "telegram", "555001", clock.now(), person=zhang)
        uow.commit()
    assert tell(services, clock, "zhang_li").channel == "wecom"
    with UnitOfWork(services.engine) as uow:
        zhang = uow.session.scalars(select(t.Person).where(t.Person.code == "zhang_li")).one()
        zhang.notify_order = "telegram"
        uow.commit()
    assert tell(services, clock, "zhang_li").channel == "telegram"


# --------------------------------------------------------------------------- the fake itself


def test_the_fake_drops_silently_past_30_a_minute_and_spends_a_response_code_once(
        fake: tuple[FakeWeCom, str], clock: FixedClock) -> None:
    wecom, api = fake
    client = client_for(wecom, api, clock)
    body = {"touser": WORKER, "msgtype": "text", "agentid": wecom.agent_id, "text": {"content": "提醒"}}
    answers = [client.post_json("message/send", body) for _ in range(PER_MINUTE + 1)]
    assert {a["errcode"] for a in answers} == {0}  # WeCom says nothing ...
    assert len(wecom.seen(WORKER)) == PER_MINUTE and len(wecom.dropped) == 1  # ... and drops one
    clock.advance(dt.timedelta(seconds=61))
    card = {"touser": "wangfang", "msgtype": "template_card", "agentid": wecom.agent_id,
            "template_card": wm.card("工单\n地点：3号楼", [("签收", "ack:1")], "gd_t1")}
    code = client.post_json("message/send", card)["response_code"]
    update = {"userids": ["wangfang"], "agentid": wecom.agent_id, "response_code": code,
              "button": {"replace_name": "已签收"}}
    client.post_json("message/update_template_card", update)
    assert wecom.cards("wangfang")[0].buttons() == []
    with pytest.raises(WeChatClientException):
        client.post_json("message/update_template_card", update)
    with pytest.raises(WeChatClientException) as escaped:
        client._request("post", "message/send", data=json_escaped(body))
    assert escaped.value.errcode == 40033


def json_escaped(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode("ascii")  # \uXXXX escapes, as json.dumps writes by default
