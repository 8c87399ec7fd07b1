"""The WeCom (企业微信) channel end to end: griddesk served on 127.0.0.1, the loopback WeCom
(tests/fakes/wecom.py) for the grid worker and the loopback WeChat Official Account for the
resident. The worker takes a case from new to resolved on WeCom alone, pressing only buttons
that the card still shows, and every step reaches the resident in WeChat."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from bot.app import Services, build_app, build_services
from bot.channels import wechat as wc
from bot.settings import Settings
from storage import db
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.fakes import wechat_crypto as crypto
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.wechat import FakeWeChat, new_openid, render_xml
from tests.fakes.wecom import FakeWeCom, Seen

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
BUILDING = "ZN-B03"  # grid G01: A 张丽 (zhang_li, WeCom zhangli), B 王芳 (wang_fang, WeCom wangfang)
WORKER = "zhangli"


@dataclass
class Apps:
    wecom: FakeWeCom
    wechat: FakeWeChat
    services: Services
    url: str
    clients: list[httpx.Client] = field(default_factory=list)

    async def resident(self) -> str:
        """A resident on WeChat who followed through the building's scene QR code."""
        client = self.services.senders["wechat"].client  # type: ignore[attr-defined]
        ticket = await asyncio.to_thread(wc.create_scene_qr, client, BUILDING)
        openid = new_openid()
        await self.wechat.scans(openid, ticket["ticket"])
        return openid

    async def heard(self, openid: str, needle: str) -> str:
        def find() -> str | None:
            return next((s.text for s in self.wechat.seen(openid) if needle in s.text), None)
        return await self.wechat.wait_for(find, timeout=10)

    async def card(self, userid: str, needle: str) -> Seen:
        def find() -> Seen | None:
            return next((c for c in self.wecom.cards(userid) if needle in c.text), None)
        return await self.wecom.wait_for(find)

    async def text(self, userid: str, needle: str) -> str:
        def find() -> str | None:
            return next((s.text for s in self.wecom.seen(userid) if s.kind == "text" and needle in s.text), None)
        return await self.wecom.wait_for(find)


Factory = Callable[..., Apps]


@pytest.fixture
def apps(sqlite_url: str, clock: FixedClock) -> Iterator[Factory]:
    stack: list[tuple[list[ServedApp], Apps]] = []

    def make(database_url: str = sqlite_url, **settings: Any) -> Apps:
        wecom = FakeWeCom(clock=clock, attempt_timeout=3.0)
        for userid, name, mobile in (("zhangli", "张丽", "13800851101"), ("wangfang", "王芳", "13800851102"),
                                     ("xuting", "徐婷", "13800851401")):
            wecom.add_member(userid, name, mobile=mobile)
        wechat = FakeWeChat(clock=clock, attempt_timeout=3.0)
        wecom_api, wechat_api = ServedApp(wecom.api_app).start(), ServedApp(wechat.api_app).start()
        values: dict[str, Any] = {
            "database_url": database_url, "secret_key": "e2e-secret", "demo": True, "send_idle_seconds": 0.05,
            "wechat_token": wechat.token, "wechat_appid": wechat.appid, "wechat_secret": wechat.secret,
            "wechat_encoding_aes_key": wechat.encoding_aes_key, "wechat_api_base": wechat_api.url,
            "wechat_reply_budget_seconds": 2.0,
            "wecom_corp_id": wecom.corp_id, "wecom_agent_id": wecom.agent_id, "wecom_secret": wecom.secret,
            "wecom_token": wecom.token, "wecom_encoding_aes_key": wecom.encoding_aes_key,
            "wecom_api_base": f"{wecom_api.url}/cgi-bin/"}
        values.update(settings)
        services = build_services(Settings(**values), clock=clock, classifier=KeywordClassifier())
        served = ServedApp(build_app(services)).start()
        wecom.app_url, wechat.app_url = f"{served.url}/wecom", f"{served.url}/wechat"
        running = Apps(wecom, wechat, services, served.url)
        stack.append(([served, wecom_api, wechat_api], running))
        return running

    yield make
    for servers, running in stack:
        for client in running.clients:
            client.close()
        for server in servers:
            server.stop()
        running.services.engine.dispose()


async def test_a_grid_worker_takes_a_case_from_new_to_resolved_on_wecom_alone(
        apps: Factory, database_url: str) -> None:
    app = apps(database_url=database_url)
    resident = await app.resident()
    filed = await app.wechat.says(resident, "楼道灯坏了三天了")
    number = NUMBER.search(filed.text or "").group(0)  # type: ignore[union-attr]

    # The case card reaches 张丽 on WeCom (her first channel), with the five steps (and 改分类).
    card = await app.card(WORKER, number)
    assert [label for label, _ in card.buttons()] == ["签收", "答复", "转办", "办结", "退单", "改分类"]
    assert "楼道灯坏了三天了" in card.text and "时限" in card.text
    assert "地点" in card.text

    # 签收: the resident hears who took it; the card loses its 签收 button.
    await app.wecom.presses(WORKER, card, "签收")
    assert "张丽" in await app.heard(resident, "已由")
    await app.wecom.wait_for(lambda: "签收" not in dict(card.buttons()) and card.buttons())
    assert "已签收" in card.text

    # 答复 asks for the text in the app chat; the next message is the answer.
    await app.wecom.presses(WORKER, card, "答复")
    await app.text(WORKER, "请输入给居民的答复")
    await app.wecom.says(WORKER, "明天上午电工上门更换")
    await app.heard(resident, "明天上午电工上门更换")
    await app.wecom.wait_for(lambda: "已答复" in card.text)

    # 办结 with its note: the resident is asked to rate; the card has no button left.
    await app.wecom.presses(WORKER, card, "办结")
    await app.text(WORKER, "请简要写明办理结果")
    await app.wecom.says(WORKER, "灯已换好")
    resolved = await app.heard(resident, "已办结")
    assert "灯已换好" in resolved and "满意" in resolved
    await app.wecom.wait_for(lambda: not card.buttons())
    with pytest.raises(ValueError, match="no button"):
        await app.wecom.presses(WORKER, card, "办结")

    rated = await app.wechat.says(resident, "1")
    assert "谢谢您的评价" in (rated.text or "")
    with UnitOfWork(app.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        assert case.state == t.CaseState.CLOSED
        # Nothing for 张丽 went to the web inbox: WeCom reached her.
        web = uow.session.scalars(select(t.Outbox).where(t.Outbox.channel == "web",
                                                         t.Outbox.address == "person:zhang_li")).all()
        assert web == []


async def test_commands_work_in_the_wecom_chat(apps: Factory) -> None:
    app = apps()
    resident = await app.resident()
    number = NUMBER.search((await app.wechat.says(resident, "垃圾没人清")).text or "").group(0)  # type: ignore[union-attr]
    await app.card(WORKER, number)

    await app.wecom.says(WORKER, "/mine")
    listing = await app.card(WORKER, "待办工单")
    assert number in listing.text or number in str(listing.card)
    assert [label for label, _ in listing.buttons()] == [number]
    before = len(app.wecom.cards(WORKER))
    await app.wecom.says(WORKER, "/case " + number)
    shown = await app.wecom.wait_for(lambda: app.wecom.cards(WORKER)[before:])
    assert number in shown[0].text and "签收" in dict(shown[0].buttons())


async def test_a_stranger_in_the_app_is_not_served_as_a_resident(apps: Factory) -> None:
    app = apps()
    app.wecom.add_member("visitor", "访客")
    result = await app.wecom.says("visitor", "楼道灯坏了")
    assert result.received and result.reply == b""
    await app.text("visitor", "不适用于您")
    with UnitOfWork(app.services.engine) as uow:
        assert uow.session.scalars(select(t.Identity).where(t.Identity.address == "visitor")).first() is None
        assert uow.session.scalars(select(t.Case)).first() is None


# --------------------------------------------------------------------------- the callback


async def test_the_url_check_returns_the_decrypted_echostr_and_refuses_a_bad_signature(apps: Factory) -> None:
    app = apps()
    # Eight checks: a "+" in some echostr is then all but certain, and it must survive decoding.
    checks = [await app.wecom.verify_url() for _ in range(8)]
    assert all(c.passed for c in checks), [(c.status, c.body) for c in checks]
    refused = await app.wecom.verify_url(sign=False)
    assert not refused.passed and refused.status == 403


def _raw_push(app: Apps, fields: dict[str, Any], timestamp: str, nonce: str) -> httpx.Response:
    encrypted = crypto.encrypt(render_xml(fields), app.wecom.encoding_aes_key, app.wecom.corp_id)
    body = render_xml({"ToUserName": app.wecom.corp_id, "AgentID": app.wecom.agent_id, "Encrypt": encrypted})
    query = {"msg_signature": crypto.signature(app.wecom.token, timestamp, nonce, encrypted),
             "timestamp": timestamp, "nonce": nonce}
    return httpx.post(f"{app.url}/wecom", params=query, content=body, trust_env=False)


async def test_stale_replayed_and_repeated_pushes_do_nothing_twice(apps: Factory) -> None:
    app = apps()
    now = str(app.wecom.now())
    # Outside the freshness window: refused, on every attempt.
    stale = await app.wecom.push(app.wecom.text(WORKER, "/mine"), timestamp=str(app.wecom.now() - 3600))
    assert not stale.received and {a.status for a in stale.attempts} == {403}
    # A signed push whose timestamp and nonce come again with another message: a replay.
    assert (await asyncio.to_thread(_raw_push, app, app.wecom.text(WORKER, "/mine"), now, "777")).status_code == 200
    replay = await asyncio.to_thread(_raw_push, app, app.wecom.text(WORKER, "/figures"), now, "777")
    assert replay.status_code == 403
    # WeCom's own retries of one message (the same MsgId): one answer.
    message = app.wecom.text(WORKER, "/mine")
    for _ in range(3):
        assert (await app.wecom.push(message)).received
    await app.text(WORKER, "没有待办工单")
    await asyncio.sleep(0.3)
    assert len([s for s in app.wecom.seen(WORKER) if "没有待办工单" in s.text]) == 2  # the raw push and this one


async def test_the_push_is_answered_at_once_while_the_work_goes_on(apps: Factory) -> None:
    app = apps()
    original = app.services.pipeline.handle
    release = threading.Event()  # the work waits for it: the answer cannot wait for the work

    async def held(incoming: Any, **options: Any) -> Any:
        await asyncio.to_thread(release.wait, 30)
        return await original(incoming, **options)

    app.services.pipeline.handle = held  # type: ignore[method-assign]
    result = await app.wecom.says(WORKER, "/mine")
    assert result.received and len(result.attempts) == 1 and result.reply == b""
    assert app.wecom.seen(WORKER) == []  # answered while the work had not even begun
    release.set()
    await app.text(WORKER, "没有待办工单")


def _raw_wechat_push(app: Apps, fields: Any, timestamp: str, nonce: str) -> httpx.Response:
    """A safe-mode Official Account push with the given timestamp and nonce."""
    encrypted = crypto.encrypt(render_xml(fields), app.wechat.encoding_aes_key, app.wechat.appid)
    query = {"signature": crypto.signature(app.wechat.token, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "openid": str(fields["FromUserName"]), "encrypt_type": "aes",
             "msg_signature": crypto.signature(app.wechat.token, timestamp, nonce, encrypted)}
    body = render_xml({"ToUserName": app.wechat.gh_id, "Encrypt": encrypted})
    return httpx.post(f"{app.url}/wechat", params=query, content=body, trust_env=False)


async def test_the_official_account_and_wecom_keep_their_own_replay_memory(apps: Factory, database_url: str) -> None:
    app = apps(database_url=database_url)
    now, nonce = str(app.wecom.now()), "424242"
    resident = app.wechat.text(new_openid(), "你好").fields
    assert (await asyncio.to_thread(_raw_wechat_push, app, resident, now, nonce)).status_code == 200
    # The same pair on the other platform is no replay: WeCom never saw it.
    first = await asyncio.to_thread(_raw_push, app, app.wecom.text(WORKER, "/mine"), now, nonce)
    assert first.status_code == 200
    await app.text(WORKER, "没有待办工单")
    # Within WeCom a pair still works once.
    replay = await asyncio.to_thread(_raw_push, app, app.wecom.text(WORKER, "/figures"), now, nonce)
    assert replay.status_code == 403


def test_push_nonces_are_kept_per_channel_in_the_shared_state_too(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    state = MemoryStateStore()
    now = dt.datetime.now(dt.UTC)
    stamp = str(int(now.timestamp()))
    official, staff = (wc.PushNonces(state=state, engine=engine, shared_state=True, window=300, channel=name)
                       for name in ("wechat", "wecom"))
    assert official.claim(stamp, "1", "m1", now) and staff.claim(stamp, "1", "m2", now)
    assert not staff.claim(stamp, "1", "m3", now)
    engine.dispose()


async def test_a_push_past_64_kb_is_refused_and_does_nothing(apps: Factory) -> None:
    app = apps()
    huge = app.wecom.text(WORKER, "/mine " + "x" * (wc.MAX_PUSH_BYTES + 1))
    answer = await asyncio.to_thread(_raw_push, app, huge, str(app.wecom.now()), "4242")
    assert answer.status_code == 413
    await asyncio.sleep(0.3)
    assert app.wecom.seen(WORKER) == []
