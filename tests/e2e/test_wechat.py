"""The WeChat Official Account channel end to end: the loopback WeChat (tests/fakes/wechat.py)
pushes to griddesk served on 127.0.0.1 and serves the API griddesk calls; the grid worker
works in the web chat over HTTP. What is asserted is what the resident sees in WeChat."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import Services, build_app, build_services
from bot.channels import wechat as wc
from bot.settings import Settings
from storage import media
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.fakes import wechat_crypto as crypto
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.wechat import UNAVAILABLE, FakeWeChat, Message, PushResult, new_openid, tiny_png

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
TEMPLATE = "TPL_CASE_PROGRESS"
BUILDING = "ZN-B03"  # grid G01, worker 张丽 (zhang_li)


@dataclass
class WeChatApp:
    fake: FakeWeChat
    services: Services
    url: str
    api: str
    clients: list[httpx.Client] = field(default_factory=list)

    def staff(self, code: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)
        self.clients.append(client)
        client.post("/api/demo/persona", json={"who": f"person:{code}"}).raise_for_status()
        return client

    def count(self, table: Any) -> int:
        with UnitOfWork(self.services.engine) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)

    async def seen(self, openid: str, needle: str, kind: str | None = None, timeout: float = 10) -> str:
        def find() -> str | None:
            for item in self.fake.seen(openid):
                if needle in item.text and (kind is None or item.kind == kind):
                    return item.text
            return None
        return await self.fake.wait_for(find, timeout=timeout)

    async def bound_resident(self, building: str = BUILDING) -> str:
        """A newcomer who followed the account through the building's scene QR code."""
        ticket = await asyncio.to_thread(wc.create_scene_qr, self.client, building)
        openid = new_openid()
        result = await self.fake.scans(openid, ticket["ticket"])
        if result.outcome != "delivered":
            # Past the reply budget (a short one, on a busy machine) the app answers "success"
            # and the welcome follows as a customer-service message.
            assert result.outcome == "nothing", result.reason
            await self.seen(openid, "已登记", kind="custom")
        return openid

    @property
    def client(self) -> wc.WeChatClient:
        return self.services.senders["wechat"].client  # type: ignore[attr-defined, no-any-return]


Factory = Callable[..., WeChatApp]


@pytest.fixture
def wechat_app(sqlite_url: str, clock: FixedClock) -> Iterator[Factory]:
    """Start the fake WeChat and griddesk; keyword arguments adjust the app's settings, and
    `fake_options` the fake's."""
    stack: list[tuple[ServedApp, ServedApp, WeChatApp]] = []

    def make(database_url: str = sqlite_url, fake_options: dict[str, Any] | None = None,
             **settings: Any) -> WeChatApp:
        fake = FakeWeChat(clock=clock, attempt_timeout=3.0,
                          templates={TEMPLATE: ""}, **(fake_options or {}))
        api = ServedApp(fake.api_app).start()
        values: dict[str, Any] = {
            "database_url": database_url, "secret_key": "e2e-secret", "demo": True, "send_idle_seconds": 0.05,
            "wechat_token": fake.token, "wechat_appid": fake.appid, "wechat_secret": fake.secret,
            "wechat_encoding_aes_key": fake.encoding_aes_key, "wechat_api_base": api.url,
            "wechat_template_notice": TEMPLATE, "wechat_reply_budget_seconds": 2.0}
        values.update(settings)
        services = build_services(Settings(**values), clock=clock, classifier=KeywordClassifier())
        served = ServedApp(build_app(services)).start()
        fake.app_url = f"{served.url}/wechat"
        running = WeChatApp(fake, services, served.url, api.url)
        stack.append((served, api, running))
        return running

    yield make
    for served, api, running in stack:
        for client in running.clients:
            client.close()
        served.stop()
        api.stop()
        running.services.engine.dispose()


def slow_pipeline(services: Services, seconds: float) -> None:
    original = services.pipeline.handle

    async def handle(incoming: Any, **options: Any) -> Any:
        await asyncio.sleep(seconds)
        return await original(incoming, **options)

    services.pipeline.handle = handle  # type: ignore[method-assign]


def case_count(app: WeChatApp) -> int:
    return app.count(t.Case)


# --------------------------------------------------------------------------- the journey


async def test_scene_qr_report_worker_handles_it_and_the_resident_gets_every_notice(
        wechat_app: Factory, database_url: str) -> None:
    app = wechat_app(database_url=database_url)
    resident = await app.bound_resident()
    welcome = app.fake.seen(resident)[-1].text
    assert "欢迎关注" in welcome and "张丽" in welcome

    result = await app.fake.says(resident, "楼道灯坏了三天了")
    assert result.outcome == "delivered"
    answer = result.text or ""
    number = NUMBER.search(answer).group(0)  # type: ignore[union-attr]
    assert "张丽" in answer and "前签收" in answer and "① 补充情况" in answer

    worker = app.staff("zhang_li")
    arrived = await wait_for_web(worker, number)
    ack = next(b["action"] for row in arrived["buttons"] for b in row if b["label"] == "签收")
    case_id = ack.split(":", 1)[1]
    worker.post("/api/chat/send", json={"action": ack}).raise_for_status()
    assert "张丽" in await app.seen(resident, "已由", kind="custom")

    worker.post("/api/chat/send", json={"action": f"rep:{case_id}"}).raise_for_status()
    worker.post("/api/chat/send", json={"text": "明天上午电工上门更换"}).raise_for_status()
    await app.seen(resident, "电工上门", kind="custom")

    worker.post("/api/chat/send", json={"action": f"res:{case_id}"}).raise_for_status()
    worker.post("/api/chat/send", json={"text": "灯已换好"}).raise_for_status()
    resolved = await app.seen(resident, "已办结", kind="custom")
    assert "① 满意" in resolved and "③ 不满意" in resolved

    rated = await app.fake.says(resident, "1")
    assert "谢谢您的评价" in (rated.text or "")
    assert case_count(app) == 1
    assert UNAVAILABLE not in [s.text for s in app.fake.seen(resident)]


async def wait_for_web(client: httpx.Client, needle: str, timeout: float = 10) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        messages = (await asyncio.to_thread(client.get, "/api/chat/inbox")).json()["messages"]
        for message in messages:
            if needle in message["text"]:
                return message  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no web notice containing {needle!r}")


# --------------------------------------------------------------------------- 5 seconds, 3 attempts


async def test_wechat_retries_create_one_case(wechat_app: Factory) -> None:
    app = wechat_app(wechat_reply_budget_seconds=2.0)
    resident = await app.bound_resident()
    # The answer takes longer than WeChat waits: its second attempt is a duplicate.
    app.fake.attempt_timeout = 0.3
    slow_pipeline(app.services, 0.6)
    result = await app.fake.says(resident, "电梯坏了困住了")
    assert len(result.attempts) >= 2 and result.outcome == "nothing"
    late = await app.seen(resident, "已受理", kind="custom")
    assert NUMBER.search(late)
    assert case_count(app) == 1

    # The same push three times (the same MsgId), each answered in time: one case, one answer.
    app.fake.attempt_timeout = 3.0
    del app.services.pipeline.handle  # the normal speed again
    message = app.fake.text(resident, "楼下垃圾没人清")
    outcomes = [(await app.fake.push(message)).outcome for _ in range(3)]
    assert outcomes == ["delivered", "nothing", "nothing"]
    assert case_count(app) == 2


async def test_a_slow_pipeline_answers_success_then_a_customer_service_message(
        wechat_app: Factory) -> None:
    app = wechat_app(wechat_reply_budget_seconds=0.2)
    resident = await app.bound_resident()
    slow_pipeline(app.services, 0.6)
    result = await app.fake.says(resident, "水管漏水了")
    assert result.outcome == "nothing" and len(result.attempts) == 1
    text = await app.seen(resident, "已受理", kind="custom")
    assert NUMBER.search(text) and "张丽" in text


# --------------------------------------------------------------------------- windows and quotas


async def test_past_the_window_notices_go_by_template(wechat_app: Factory) -> None:
    app = wechat_app()
    resident = await app.bound_resident()
    number = NUMBER.search((await app.fake.says(resident, "路灯不亮")).text or "").group(0)  # type: ignore[union-attr]
    worker = app.staff("zhang_li")
    arrived = await wait_for_web(worker, number)
    case_id = arrived["buttons"][0][0]["action"].split(":")[1]

    app.fake.advance(dt.timedelta(hours=49))  # the 48-hour window has closed (45015)
    worker.post("/api/chat/send", json={"action": f"ack:{case_id}"}).raise_for_status()
    told = await app.seen(resident, number, kind="template")
    assert "已由" in told
    sent = app.fake.sent("template", resident)[-1].payload
    assert sent["data"]["keyword1"]["value"] == number

    # Within a window whose quota is spent (45047): the template too, no retry storm.
    await app.fake.says(resident, "补充一下，是三号门口那盏")
    calls_before = len([c for c in app.fake.api_calls if c.path == "message/custom/send"])
    app.fake.inject(45047, path="message/custom/send")
    worker.post("/api/chat/send", json={"action": f"rep:{case_id}"}).raise_for_status()
    worker.post("/api/chat/send", json={"text": "已报修电力公司"}).raise_for_status()
    await app.seen(resident, "已报修电力公司", kind="template")
    calls = [c for c in app.fake.api_calls if c.path == "message/custom/send"]
    assert len(calls) - calls_before <= 2


async def test_without_a_template_notices_wait_for_the_residents_next_message(
        wechat_app: Factory) -> None:
    app = wechat_app(wechat_template_notice=None)
    resident = await app.bound_resident()
    number = NUMBER.search((await app.fake.says(resident, "电梯坏了")).text or "").group(0)  # type: ignore[union-attr]
    worker = app.staff("zhang_li")
    arrived = await wait_for_web(worker, number)
    case_id = arrived["buttons"][0][0]["action"].split(":")[1]
    app.fake.advance(dt.timedelta(hours=49))
    worker.post("/api/chat/send", json={"action": f"ack:{case_id}"}).raise_for_status()

    def held() -> bool:
        with UnitOfWork(app.services.engine) as uow:
            row = uow.session.scalars(select(t.Outbox).where(t.Outbox.address == resident)
                                      .order_by(t.Outbox.id.desc())).first()  # type: ignore[union-attr]
            return bool(row and row.state == "pending" and row.next_attempt_at > app.services.clock.now()
                        + dt.timedelta(days=6))
    await app.fake.wait_for(held)
    assert not [s for s in app.fake.seen(resident) if "已由" in s.text]

    await app.fake.says(resident, "你好")
    assert "张丽" in await app.seen(resident, "已由", kind="custom")


# --------------------------------------------------------------------------- modes, keys and refusals


async def test_url_verification(wechat_app: Factory) -> None:
    app = wechat_app()
    assert (await app.fake.verify_url()).passed
    refused = await app.fake.verify_url(sign=False)
    assert not refused.passed and refused.status == 403


@pytest.mark.parametrize(("mode", "settings"), [
    ("compat", {}),
    ("plain", {"wechat_encoding_aes_key": None}),     # an account that never set a key
    ("plain", {"wechat_allow_plain": True}),          # a key, and plain mode allowed on purpose
])
async def test_plain_and_compat_modes(wechat_app: Factory, mode: str, settings: dict[str, Any]) -> None:
    app = wechat_app(fake_options={"mode": mode}, **settings)
    resident = await app.bound_resident()
    result = await app.fake.says(resident, "井盖丢了")
    assert result.outcome == "delivered" and NUMBER.search(result.text or "")


async def test_a_rotated_aes_key_still_decrypts(wechat_app: Factory) -> None:
    old, new = crypto.new_encoding_aes_key(), crypto.new_encoding_aes_key()
    app = wechat_app(fake_options={"encoding_aes_key": old}, wechat_encoding_aes_key=new,
                     wechat_previous_encoding_aes_key=old)
    resident = await app.bound_resident()  # WeChat still encrypts with the old key
    assert (await app.fake.says(resident, "你好")).outcome == "delivered"
    app.fake.rotate_key(new)
    assert (await app.fake.says(resident, "谢谢")).outcome == "delivered"


async def test_bad_signature_xxe_and_garbage_are_refused_and_store_nothing(
        wechat_app: Factory) -> None:
    app = wechat_app(wechat_allow_plain=True)  # the plaintext refusals too
    resident = app.fake.add_user()
    before = (app.count(t.Case), app.count(t.Identity), app.count(t.Outbox), app.count(t.Resident))
    good = app.fake.text(resident, "楼道灯坏了")

    forged = await app.fake.push_raw(render(good), openid=resident, sign=False)
    assert {a.status for a in forged.attempts} == {403}
    xxe = (b'<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b"<xml><ToUserName>gh</ToUserName><FromUserName>" + resident.encode() +
           b"</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&e;</Content>"
           b"<MsgId>1</MsgId></xml>")
    for encrypt in (False, True):
        refused = await app.fake.push_raw(xxe, openid=resident, encrypt=encrypt)
        assert {a.status for a in refused.attempts} == {400}
    laughs = b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml>&b;</xml>'
    assert {a.status for a in (await app.fake.push_raw(laughs, openid=resident)).attempts} == {400}
    garbage = await app.fake.push_raw(os.urandom(1024 * 1024), openid=resident)
    # Refused with 413 as soon as Content-Length is read; a client still sending the body may
    # see the closed connection instead of the answer.
    assert garbage.outcome == "error" and {a.status for a in garbage.attempts} <= {413, None}
    assert await post_garbage_ciphertext(app, resident) == 400
    assert {a.status for a in (await app.fake.push_raw(b"not xml at all", openid=resident)).attempts} \
        == {400}

    assert (app.count(t.Case), app.count(t.Identity), app.count(t.Outbox), app.count(t.Resident)) == before
    # The genuine message after all that is handled normally.
    assert (await app.fake.push(good)).outcome == "delivered"


def render(message: Message) -> bytes:
    from tests.fakes.wechat import render_xml

    return render_xml(message.fields)


async def post_garbage_ciphertext(app: WeChatApp, openid: str) -> int:
    """Ciphertext that is correctly signed but decrypts to nothing meaningful."""
    encrypted = base64.b64encode(os.urandom(96)).decode()
    ts, nonce = str(app.fake.now()), crypto.nonce()
    query = {"signature": crypto.signature(app.fake.token, ts, nonce), "timestamp": ts, "nonce": nonce,
             "openid": openid, "encrypt_type": "aes",
             "msg_signature": crypto.signature(app.fake.token, ts, nonce, encrypted)}
    body = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(app.fake.app_url or "", params=query, content=body.encode())
    return response.status_code


# --------------------------------------------------------------------------- message types and the menu


async def test_voice_with_and_without_recognition(wechat_app: Factory) -> None:
    app = wechat_app()
    resident = await app.bound_resident()
    # WeChat could not transcribe it: kept, and the resident is asked for a sentence in writing.
    unheard = b"#!AMR\n" + os.urandom(64)
    silent = await app.fake.sends_voice(resident, media_id="VOICE0", data=unheard)
    assert "语音" in (silent.text or "") and "文字" in (silent.text or "")
    assert case_count(app) == 0
    recording = b"#!AMR\n" + os.urandom(64)
    heard = await app.fake.sends_voice(resident, recognition="小区路灯坏了", media_id="VOICE1", data=recording)
    assert NUMBER.search(heard.text or "")
    empty = await app.fake.sends_voice(resident, recognition="")
    assert "语音" in (empty.text or "")
    assert case_count(app) == 1
    # Both voice messages go with the case, in the order they were sent: staff can listen to
    # what was said (the third waits for its sentence).
    assert kept_attachments(app) == [("voice", unheard, "audio/amr"), ("voice", recording, "audio/amr")]


def kept_attachments(app: WeChatApp) -> list[tuple[str, bytes | None, str | None]]:
    """(kind, kept bytes or None, content type or None) of every attachment, oldest first."""
    found: list[tuple[str, bytes | None, str | None]] = []
    with UnitOfWork(app.services.engine) as uow:
        for att in uow.session.scalars(select(t.Attachment).order_by(t.Attachment.id)):
            media_id = media.id_in(att.ref)
            row = media.get(uow.session, media_id) if media_id is not None else None
            found.append((att.kind, row.data if row else None, row.content_type if row else None))
    return found


def attachment_refs(app: WeChatApp) -> list[str]:
    with UnitOfWork(app.services.engine) as uow:
        return [a.ref for a in uow.session.scalars(select(t.Attachment).order_by(t.Attachment.id))]


def web_resident(app: WeChatApp, building: str = "ZN-B01") -> httpx.Client:
    """A resident of another building, signed in to the web chat."""
    client = httpx.Client(base_url=app.url, timeout=10, trust_env=False)
    app.clients.append(client)
    client.post("/api/demo/persona", json={"who": f"building:{building}"}).raise_for_status()
    return client


async def test_a_photo_is_kept_and_the_grid_worker_sees_it(wechat_app: Factory, database_url: str) -> None:
    app = wechat_app(database_url=database_url)
    resident = await app.bound_resident()
    photo = tiny_png((250, 200, 0))
    asked = await app.fake.sends_image(resident, media_id="MEDIA123", data=photo, content_type="image/png")
    assert "说明" in (asked.text or "")
    filed = await app.fake.says(resident, "楼道灯坏了")
    number = NUMBER.search(filed.text or "").group(0)  # type: ignore[union-attr]

    # What WeChat served is what is kept, and the attachment points at the kept copy.
    assert app.fake.media("MEDIA123") == (photo, "image/png")
    assert kept_attachments(app) == [("photo", photo, "image/png")]
    [ref] = attachment_refs(app)
    media_id = media.id_in(ref)
    assert media_id is not None

    worker = app.staff("zhang_li")
    card = (await wait_for_web(worker, number))["text"]
    assert "居民发来：照片 1 张" in card

    listed = worker.get(f"/api/cases/{number}/attachments")
    assert listed.status_code == 200
    assert [(a["kind"], a["url"]) for a in listed.json()] == [("photo", f"/media/{media_id}")]
    got = worker.get(f"/media/{media_id}")
    assert got.status_code == 200 and got.content == photo
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"

    # Nobody else learns of it: another resident, a grid worker of another grid, no session.
    others = [web_resident(app), app.staff("chen_jing")]
    for other in others:
        assert other.get(f"/media/{media_id}").status_code == 404
        assert other.get(f"/api/cases/{number}/attachments").status_code == 404
        assert other.get(f"/media/{media_id + 1}").status_code == 404
    anonymous = httpx.Client(base_url=app.url, timeout=10, trust_env=False)
    app.clients.append(anonymous)
    assert anonymous.get(f"/media/{media_id}").status_code == 401

    # The same photo sent again (a new MediaId, the same bytes) is stored once.
    await app.fake.sends_image(resident, media_id="MEDIA456", data=photo, content_type="image/png")
    again = await app.fake.says(resident, "楼道灯还是坏的")
    assert NUMBER.search(again.text or "")
    assert app.count(t.Media) == 1
    assert attachment_refs(app) == [ref, ref]


async def test_a_grid_worker_on_wechat_gets_the_photos_as_one_link(wechat_app: Factory) -> None:
    app = wechat_app()
    staff_openid = app.fake.add_user()
    with UnitOfWork(app.services.engine) as uow:
        worker = uow.session.scalars(select(t.Person).where(t.Person.code == "zhang_li")).one()
        uow.session.add(t.Identity(channel="wechat", address=staff_openid, person_id=worker.id,
                                   created_at=app.services.clock.now()))
        uow.commit()
    await app.fake.says(staff_openid, "/mine")  # the worker wrote: the account may write back
    resident = await app.bound_resident()
    photo = tiny_png((0, 120, 250))
    await app.fake.sends_image(resident, media_id="MEDIA789", data=photo, content_type="image/png")
    recording = b"#!AMR\n" + os.urandom(48)
    await app.fake.sends_voice(resident, media_id="VOICE789", data=recording)  # not transcribed
    filed = await app.fake.says(resident, "楼道灯坏了")
    number = NUMBER.search(filed.text or "").group(0)  # type: ignore[union-attr]

    card = await app.seen(staff_openid, number)
    found = re.search(r"照片/语音 2 个：(\S+)", card)
    assert found and "居民发来：照片 1 张 · 语音 1 条" in card, card
    # One message for the card and its photo: the worker's 5 messages in 48 h are not spent on pictures.
    assert len([s for s in app.fake.sent("custom", staff_openid) if number in s.text]) == 1
    path = httpx.URL(found.group(1)).raw_path.decode()
    browser = httpx.Client(base_url=app.url, timeout=10, trust_env=False)
    app.clients.append(browser)
    page = browser.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    [src] = re.findall(r'<img src="([^"]+)"', page.text)
    got = browser.get(src)
    assert got.status_code == 200 and got.content == photo and got.headers["content-type"] == "image/png"
    [played] = re.findall(r'<audio controls preload="none" src="([^"]+)"', page.text)
    heard = browser.get(played)
    assert (heard.status_code, heard.content, heard.headers["content-type"]) == (200, recording, "audio/amr")

    # The link shows those photos only, and only as signed.
    other_id = max(int(src.rsplit("/", 1)[1]), int(played.rsplit("/", 1)[1])) + 1
    assert browser.get(src.rsplit("/", 1)[0] + f"/{other_id}").status_code == 404
    assert browser.get(path[:-3] + "xyz").status_code == 404
    assert browser.get(path.replace("photos%3A", "photos%3A9")).status_code == 404


async def test_a_photo_wechat_will_not_hand_over_still_files_the_case_with_its_media_id(
        wechat_app: Factory) -> None:
    app = wechat_app()
    resident = await app.bound_resident()
    app.fake.inject(40007, path="media/get")  # invalid media_id: expired, or never there
    asked = await app.fake.sends_image(resident, media_id="MEDIA123")
    assert "说明" in (asked.text or "")
    filed = await app.fake.says(resident, "楼道灯坏了")
    number = NUMBER.search(filed.text or "").group(0)  # type: ignore[union-attr]
    assert attachment_refs(app) == ["MEDIA123"]
    assert app.count(t.Media) == 0
    assert [c.answer["errcode"] for c in app.fake.api_calls  # type: ignore[index]
            if c.path == "media/get"] == [40007]

    worker = app.staff("zhang_li")
    assert "居民发来：照片 1 张" in (await wait_for_web(worker, number))["text"]
    assert [(a["kind"], a["url"]) for a in worker.get(f"/api/cases/{number}/attachments").json()] == \
        [("photo", None)]


async def test_a_slow_download_does_not_make_wechat_retry(wechat_app: Factory) -> None:
    app = wechat_app(wechat_reply_budget_seconds=0.3)
    resident = await app.bound_resident()
    app.fake.inject(None, delay=1.0, path="media/get")
    photo = tiny_png((0, 0, 250))
    result = await app.fake.sends_image(resident, data=photo, content_type="image/png")
    # Answered "success" within the budget, once; the prompt follows as a customer-service message.
    assert result.outcome == "nothing" and len(result.attempts) == 1
    await app.seen(resident, "说明", kind="custom")
    filed = await app.fake.says(resident, "楼道灯坏了")
    assert NUMBER.search(filed.text or "")
    assert kept_attachments(app) == [("photo", photo, "image/png")]


async def test_a_description_sent_while_its_photo_downloads_still_gets_the_photo(
        wechat_app: Factory) -> None:
    app = wechat_app(wechat_reply_budget_seconds=0.3)
    resident = await app.bound_resident()
    app.fake.inject(None, delay=1.0, path="media/get")
    photo = tiny_png((0, 250, 0))
    # The photo is answered "success" after the budget, its download still under way; the
    # description arrives before the download ends.
    shown = await app.fake.sends_image(resident, data=photo, content_type="image/png")
    described = await app.fake.says(resident, "楼道灯坏了")
    assert shown.outcome == "nothing" and described.outcome == "nothing"
    assert NUMBER.search(await app.seen(resident, "已受理", kind="custom"))
    assert kept_attachments(app) == [("photo", photo, "image/png")]
    assert case_count(app) == 1


async def test_an_unbound_resident_binds_by_location_or_by_options(wechat_app: Factory) -> None:
    app = wechat_app()
    with UnitOfWork(app.services.engine) as uow:
        building = uow.session.scalars(select(t.Building).where(t.Building.code == BUILDING)).one()
        lat, lon = building.latitude, building.longitude
    assert lat is not None and lon is not None

    newcomer = new_openid()
    followed = await app.fake.follow(newcomer)
    assert "欢迎关注" in (followed.text or "") and "① " in (followed.text or "")
    shared = await app.fake.shares_location(newcomer, f"{lat:.6f}", f"{lon:.6f}", label="小区")
    assert "已登记" in (shared.text or "") and "张丽" in (shared.text or "")

    other = new_openid()
    await app.fake.follow(other)
    committee = await app.fake.says(other, "1")
    assert "请选择您的楼栋" in (committee.text or "") and "① " in (committee.text or "")
    bound = await app.fake.says(other, "1")
    assert "已登记" in (bound.text or "")
    # The passive location report (LOCATION event) is not a message: nothing is answered.
    assert (await app.fake.reports_location(other, lat, lon)).outcome == "nothing"


async def test_menu_taps(wechat_app: Factory) -> None:
    app = wechat_app()
    await asyncio.to_thread(wc.create_menu, app.client)
    resident = await app.bound_resident()
    grid = await app.fake.taps(resident, wc.KEY_MY_GRID)
    assert "网格指示牌" in (grid.text or "") and "张丽" in (grid.text or "")
    assert "还没有工单" in ((await app.fake.taps(resident, wc.KEY_MY_CASES)).text or "")
    for key, needle in ((wc.KEY_SERVICE, "要办的事"), (wc.KEY_COMPLAINT, "投诉"), (wc.KEY_PROPOSAL, "建议")):
        assert needle in ((await app.fake.taps(resident, key)).text or "")
    assert case_count(app) == 0


async def test_resident_text_with_cdata_end_is_echoed_safely(wechat_app: Factory) -> None:
    app = wechat_app()
    resident = await app.bound_resident()
    await app.fake.says(resident, "灯坏了]]><x>注入")
    listed = await app.fake.taps(resident, wc.KEY_MY_CASES)
    assert listed.outcome == "delivered" and "灯坏了]]><x>注入" in (listed.text or "")


async def test_unknown_types_get_a_polite_answer(wechat_app: Factory) -> None:
    app = wechat_app()
    resident = await app.bound_resident()
    base = app.fake.text(resident, "x").fields
    link = {k: v for k, v in base.items() if k not in ("Content", "MsgType", "MsgId")} | {
        "MsgType": "link", "Title": "t", "Description": "d", "Url": "http://example.org",
        "MsgId": base["MsgId"]}
    answered: PushResult = await app.fake.push(Message(resident, link))
    assert answered.outcome == "delivered" and "暂时处理不了" in (answered.text or "")
    assert (await app.fake.unfollow(resident)).outcome == "nothing"
