"""The loopback WeChat fake behaves as PROTOCOLS.md §2.3 says WeChat does.

Its crypto is checked against the official vectors (§2.1, §3.1) and against wechatpy in both
directions; its push side against a small callback app written with wechatpy, served on
127.0.0.1; its API side against wechatpy's WeChatClient pointed at the fake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from wechatpy import create_reply, parse_message
from wechatpy.client import WeChatClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.events import (
    ClickEvent,
    LocationEvent,
    ScanEvent,
    SubscribeEvent,
    SubscribeScanEvent,
    TemplateSendJobFinishEvent,
    UnsubscribeEvent,
)
from wechatpy.exceptions import (
    APILimitedException,
    InvalidSignatureException,
    WeChatClientException,
)
from wechatpy.messages import ImageMessage, LocationMessage, TextMessage, VoiceMessage
from wechatpy.utils import check_signature

from tests.fakes import wechat_crypto as crypto
from tests.fakes.serving import serve
from tests.fakes.wechat import UNAVAILABLE, FakeWeChat, new_openid, render_xml, tiny_png

APPID = "wx00griddesk0001"
SECRET = "0123456789abcdef0123456789abcdef"
TEMPLATE = "TPL_CASE_PROGRESS"
NOTICE = "SUB_CASE_CLOSED"


# --------------------------------------------------------------------------- crypto vectors


def test_signature_matches_the_official_oa_vectors() -> None:
    assert crypto.signature("AAAAA", "1714036504", "1514711492") == \
        "f464b24fc39322e44b38aa78f5edd27bd1441696"
    assert crypto.signature("AAAAA", "1714037059", "486452656") == \
        "899cf89e464efb63f54ddac96b0a0a235f53aa78"


WECOM_TOKEN = "QDG6eK"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WECOM_CORP = "wx5823bf96d3bd56c7"
WECOM_ECHOSTR = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==")
WECOM_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Q"
    "czcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs"
    "8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG"
    "4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+"
    "rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0l"
    "XdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)


def test_crypto_matches_the_official_wecom_url_check_vector() -> None:
    assert crypto.signature(WECOM_TOKEN, "1409659589", "263014780", WECOM_ECHOSTR) == \
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    assert crypto.decrypt(WECOM_ECHOSTR, WECOM_KEY) == (b"1616140317555161061", WECOM_CORP)


def test_crypto_matches_the_official_wecom_message_vector() -> None:
    assert crypto.signature(WECOM_TOKEN, "1409659813", "1372623149", WECOM_ENCRYPT) == \
        "477715d11cdb4164915debcba66cb864d751f3e6"
    plain, receiver = crypto.decrypt(WECOM_ENCRYPT, WECOM_KEY)
    assert receiver == WECOM_CORP
    root = ET.fromstring(plain)
    assert root.findtext("Content") == "hello"
    assert root.findtext("FromUserName") == "mycreate"
    assert root.findtext("AgentID") == "218"
    assert root.findtext("MsgId") == "4561255354251345929"


def test_encryption_round_trips_and_a_wrong_key_is_refused() -> None:
    key = crypto.new_encoding_aes_key()
    # Lengths around the 32-byte padding block, including an exact multiple.
    for message in (b"", "网格员".encode(), b"x" * 5, b"y" * 50):
        encrypted = crypto.encrypt(message, key, APPID)
        assert crypto.decrypt(encrypted, key) == (message, APPID)
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(crypto.encrypt(b"<xml/>" * 9, key, APPID), crypto.new_encoding_aes_key())


def test_wechatpy_decrypts_what_the_fake_encrypts() -> None:
    key = crypto.new_encoding_aes_key()
    message = "<xml><Content><![CDATA[楼道灯坏了]]></Content></xml>"
    encrypted = crypto.encrypt(message.encode(), key, APPID)
    msg_signature = crypto.signature("tok", "1700000000", "42", encrypted)
    envelope = f"<xml><ToUserName>gh_x</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    assert WeChatCrypto("tok", key, APPID).decrypt_message(
        envelope, msg_signature, "1700000000", "42") == message


def test_the_fake_decrypts_what_wechatpy_encrypts() -> None:
    key = crypto.new_encoding_aes_key()
    reply = "<xml><Content><![CDATA[已受理]]></Content></xml>"
    answer = WeChatCrypto("tok", key, APPID).encrypt_message(reply, "42", "1700000000")
    envelope = ET.fromstring(answer)
    encrypted = envelope.findtext("Encrypt") or ""
    assert envelope.findtext("MsgSignature") == \
        crypto.signature("tok", "1700000000", "42", encrypted)
    assert crypto.decrypt(encrypted, key) == (reply.encode(), APPID)


# --------------------------------------------------------------------------- a callback app


class Callback:
    """A small app at the WeChat callback URL, written with wechatpy: it verifies, decrypts,
    parses and answers as `answer` says (a reply text, or None for "success")."""

    def __init__(self, fake: FakeWeChat) -> None:
        self.fake = fake
        self.received: list[object] = []
        self.queries: list[dict[str, str]] = []
        self.answer: Callable[[object], str | None] = lambda m: f"收到：{getattr(m, 'content', '')}"
        self.delay = 0.0
        self.statuses: list[int] = []      # forced HTTP statuses for the next requests
        self.raw: bytes | None = None      # a fixed body instead of a rendered reply
        self.encrypt_replies = True        # False: answer encrypted pushes in plaintext
        self.quote_echostr = False         # True: answer the URL check with "echostr", quoted
        self.app = FastAPI()
        self.app.get("/wechat")(self.verify)
        self.app.post("/wechat")(self.receive)

    def verify(self, signature: str, timestamp: str, nonce: str, echostr: str) -> Response:
        try:
            check_signature(self.fake.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            return Response(status_code=403)
        return PlainTextResponse(f'"{echostr}"' if self.quote_echostr else echostr)

    async def receive(self, request: Request) -> Response:
        q = dict(request.query_params)
        self.queries.append(q)
        if self.statuses:
            return Response(status_code=self.statuses.pop(0))
        body = await request.body()
        crypto_ = WeChatCrypto(self.fake.token, self.fake.encoding_aes_key, self.fake.appid)
        try:
            check_signature(self.fake.token, q["signature"], q["timestamp"], q["nonce"])
            encrypted = q.get("encrypt_type") == "aes"
            xml = crypto_.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"]) \
                if encrypted else body
            message = parse_message(xml)
        except Exception:  # noqa: BLE001 - any bad push is refused the same way
            return Response(status_code=403)
        self.received.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raw is not None:
            return Response(self.raw, media_type="application/xml")
        text = self.answer(message)
        if text is None:
            return PlainTextResponse("success")
        reply = create_reply(text, message).render()
        if encrypted and self.encrypt_replies:
            reply = crypto_.encrypt_message(reply, q["nonce"], q["timestamp"])
        return Response(reply, media_type="application/xml")


class LoopbackClient(WeChatClient):
    """wechatpy's client pointed at the fake (PROTOCOLS.md §2.1: override both the API base and
    the hard-coded token URL)."""

    def __init__(self, base: str, appid: str, secret: str, **kwargs: object) -> None:
        self.API_BASE_URL = f"{base}/cgi-bin/"
        self._base = base
        super().__init__(appid, secret, **kwargs)
        self._http.trust_env = False

    def fetch_access_token(self) -> dict[str, object]:
        return self._fetch_access_token(
            url=f"{self._base}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret})


@dataclass
class Setup:
    fake: FakeWeChat
    app: Callback
    api: str

    def client(self, **kwargs: object) -> LoopbackClient:
        # auto_retry=False: wechatpy's retry on 40001/42001 recurses without limit (§0, trap 8).
        return LoopbackClient(self.api, self.fake.appid, self.fake.secret, auto_retry=False,
                              **kwargs)


@pytest.fixture
def wechat() -> Iterator[Setup]:
    fake = FakeWeChat(appid=APPID, secret=SECRET,
                      templates={TEMPLATE: "案件 {{case.DATA}}：{{status.DATA}}"},
                      subscribe_templates=[NOTICE])
    app = Callback(fake)
    with serve(app.app) as app_url, serve(fake.api_app) as api:
        fake.app_url = f"{app_url}/wechat"
        yield Setup(fake, app, api)


# --------------------------------------------------------------------------- push side


async def test_url_check_passes_only_with_echostr_verbatim(wechat: Setup) -> None:
    assert (await wechat.fake.verify_url()).passed
    assert not (await wechat.fake.verify_url(sign=False)).passed
    wechat.app.quote_echostr = True
    result = await wechat.fake.verify_url()
    assert result.status == 200 and not result.passed


@pytest.mark.parametrize("mode", ["safe", "compat", "plain"])
async def test_passive_reply_reaches_the_resident_in_every_mode(wechat: Setup, mode: str) -> None:
    wechat.fake.mode = mode
    resident = wechat.fake.add_user()
    result = await wechat.fake.says(resident, "楼道灯坏了三天")
    assert result.outcome == "delivered", result.reason
    assert len(result.attempts) == 1
    assert wechat.fake.seen(resident)[-1].kind == "passive"
    assert wechat.fake.seen(resident)[-1].text == "收到：楼道灯坏了三天"
    query = wechat.app.queries[-1]
    assert {"signature", "timestamp", "nonce", "openid"} <= query.keys()
    assert ("encrypt_type" in query) == (mode != "plain")
    body = ET.fromstring(result.attempts[0].body)
    if mode == "safe":
        assert [e.tag for e in body] == ["ToUserName", "Encrypt"]
    else:
        assert body.findtext("Content") == "楼道灯坏了三天"
        assert (body.find("Encrypt") is not None) == (mode == "compat")


async def test_compat_mode_accepts_a_plaintext_reply(wechat: Setup) -> None:
    wechat.fake.mode = "compat"
    wechat.app.encrypt_replies = False
    resident = wechat.fake.add_user()
    assert (await wechat.fake.says(resident, "你好")).outcome == "delivered"


async def test_safe_mode_refuses_a_plaintext_reply(wechat: Setup) -> None:
    resident = wechat.fake.add_user()
    wechat.fake.mode = "plain"
    # A correct plaintext reply, captured, then replayed to a safe-mode push.
    plain = (await wechat.fake.says(resident, "你好")).attempts[0]
    assert plain.status == 200
    wechat.fake.mode = "safe"
    wechat.app.raw = plain.reply
    result = await wechat.fake.says(resident, "你好")
    assert result.outcome == "error" and "encrypted" in result.reason
    assert wechat.fake.seen(resident)[-1].text == UNAVAILABLE


async def test_every_message_type_parses_in_wechatpy(wechat: Setup) -> None:
    fake = wechat.fake
    wechat.app.answer = lambda m: None
    resident = fake.add_user()
    newcomer = new_openid()
    results = [
        await fake.says(resident, "a ]]> b"),
        await fake.sends_image(resident),
        await fake.sends_voice(resident),
        await fake.sends_voice(resident, recognition="灯坏了"),
        await fake.shares_location(resident, "31.230416", "121.473701", scale=16, label="人民广场"),
        await fake.follow(newcomer, scene="grid-3"),
        await fake.taps(resident, "MY_CASES"),
        await fake.reports_location(resident, 31.23, 121.47, 30.0),
        await fake.push(fake.scan(resident, "grid-7", ticket="TICKET")),
        await fake.push(fake.template_job_finished(resident, 123)),
        await fake.unfollow(resident),
        await fake.follow(resident),
    ]
    assert all(r.outcome == "nothing" for r in results)
    text, image, voice, voice_text, location, scan_follow, click, loc_event, scan, job, unfollow, \
        follow = wechat.app.received
    assert isinstance(text, TextMessage) and text.content == "a ]]> b"
    assert isinstance(image, ImageMessage) and image.image and image.media_id
    assert isinstance(voice, VoiceMessage) and voice.recognition is None
    assert isinstance(voice_text, VoiceMessage) and voice_text.recognition == "灯坏了"
    assert isinstance(location, LocationMessage)
    assert (location.location_x, location.location_y) == ("31.230416", "121.473701")
    assert location.label == "人民广场" and location.scale == "16"
    assert isinstance(scan_follow, SubscribeScanEvent) and scan_follow.scene_id == "grid-3"
    assert isinstance(click, ClickEvent) and click.key == "MY_CASES"
    assert isinstance(loc_event, LocationEvent) and loc_event.latitude == 31.23
    assert isinstance(scan, ScanEvent) and (scan.scene_id, scan.ticket) == ("grid-7", "TICKET")
    assert isinstance(job, TemplateSendJobFinishEvent) and job.status == "success"
    assert isinstance(unfollow, UnsubscribeEvent)
    assert isinstance(follow, SubscribeEvent) and follow.id == 0
    ids = [r.msg_id for r in results if r.msg_id is not None]
    assert len(ids) == 5 and len(set(ids)) == 5 and all(0 < i < 2**64 for i in ids)
    assert all(isinstance(r.fields["CreateTime"], int) for r in results)
    # Events of one resident never share FromUserName+CreateTime, the events' dedupe key.
    mine = [r.fields["CreateTime"] for r in results if r.openid == resident]
    assert len(set(mine)) == len(mine)


async def test_a_slow_app_gets_three_attempts_then_the_resident_sees_the_error(
        wechat: Setup) -> None:
    wechat.fake.attempt_timeout = 0.2
    wechat.app.delay = 0.6
    resident = wechat.fake.add_user()
    result = await wechat.fake.says(resident, "有人吗")
    assert result.outcome == "error"
    assert [a.status for a in result.attempts] == [None, None, None]
    assert len({a.body for a in result.attempts}) == 1
    nonces = {a.query["nonce"] for a in result.attempts}
    assert len(nonces) == 3
    assert [s.text for s in wechat.fake.seen(resident)] == [UNAVAILABLE]
    await wechat.fake.wait_for(lambda: len(wechat.app.received) == 3)
    assert {m.id for m in wechat.app.received} == {result.msg_id}
    assert {m.create_time for m in wechat.app.received} == {wechat.app.received[0].create_time}


async def test_a_non_200_answer_is_retried(wechat: Setup) -> None:
    wechat.app.statuses = [500, 502]
    resident = wechat.fake.add_user()
    result = await wechat.fake.says(resident, "再试一次")
    assert [a.status for a in result.attempts] == [500, 502, 200]
    assert result.outcome == "delivered"
    wechat.app.statuses = [500, 500, 500]
    assert (await wechat.fake.says(resident, "不行")).outcome == "error"


@pytest.mark.parametrize("answer", [b"success", b""])
async def test_success_or_empty_reaches_nobody(wechat: Setup, answer: bytes) -> None:
    wechat.app.raw = answer
    resident = wechat.fake.add_user()
    result = await wechat.fake.says(resident, "收到请回复")
    assert result.outcome == "nothing" and len(result.attempts) == 1
    assert wechat.fake.seen(resident) == []


@pytest.mark.parametrize("raw", [
    b'{"reply": "json is not accepted"}',
    b"<xml><ToUserName>broken",
    b"<xml><ToUserName><![CDATA[someone-else]]></ToUserName></xml>",
])
async def test_an_invalid_answer_shows_the_error(wechat: Setup, raw: bytes) -> None:
    wechat.fake.mode = "plain"
    wechat.app.raw = raw
    resident = wechat.fake.add_user()
    result = await wechat.fake.says(resident, "你好")
    assert result.outcome == "error" and len(result.attempts) == 1
    assert wechat.fake.seen(resident)[-1].kind == "error"


async def test_raw_pushes_with_a_bad_signature_or_a_doctype_are_refused(wechat: Setup) -> None:
    fake = wechat.fake
    resident = fake.add_user()
    good = fake.text(resident, "hi")
    refused = await fake.push_raw(b"<xml/>", openid=resident, sign=False)
    assert [a.status for a in refused.attempts] == [403, 403, 403]
    assert refused.outcome == "error"
    xxe = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>'
    assert (await fake.push_raw(xxe, encrypt=True)).attempts[0].status == 403
    accepted = await fake.push_raw(render_xml(good.fields), openid=resident, encrypt=True)
    assert accepted.outcome == "delivered"


async def test_rotating_the_key_encrypts_with_the_new_one(wechat: Setup) -> None:
    fake = wechat.fake
    old = fake.encoding_aes_key
    new = fake.rotate_key()
    assert (fake.previous_encoding_aes_key, fake.encoding_aes_key) == (old, new)
    resident = fake.add_user()
    result = await fake.says(resident, "换钥匙了")
    assert result.outcome == "delivered"
    encrypted = ET.fromstring(result.attempts[0].body).findtext("Encrypt") or ""
    assert crypto.decrypt(encrypted, new)[1] == APPID
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(encrypted, old)


# --------------------------------------------------------------------------- API side


def test_each_token_fetch_supersedes_the_last_for_five_minutes(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    fake.blocking.says(resident, "你好")
    first = client.fetch_access_token()["access_token"]
    second = client.fetch_access_token()["access_token"]
    assert first != second
    old = wechat.client(access_token=first)
    old.message.send_text(resident, "旧令牌仍可用")
    fake.advance(dt.timedelta(minutes=5))
    with pytest.raises(WeChatClientException) as excinfo:
        old.message.send_text(resident, "旧令牌已失效")
    assert excinfo.value.errcode == 40001
    assert excinfo.value.errmsg.startswith(
        "invalid credential, access_token is invalid or not latest rid: ")
    client.message.send_text(resident, "新令牌可用")
    fake.advance(dt.timedelta(seconds=7200))
    with pytest.raises(WeChatClientException) as excinfo:
        wechat.client(access_token=second).message.send_text(resident, "过期")
    assert excinfo.value.errcode == 42001


def test_token_fetch_checks_appid_secret_whitelist_and_quota(wechat: Setup) -> None:
    fake = wechat.fake
    bad = [(LoopbackClient(wechat.api, "wx-someone-else", SECRET), 40013),
           (LoopbackClient(wechat.api, APPID, "wrong"), 40001)]
    for client, errcode in bad:
        with pytest.raises(WeChatClientException) as excinfo:
            client.fetch_access_token()
        assert excinfo.value.errcode == errcode
    fake.ip_whitelist = {"203.0.113.9"}
    with pytest.raises(WeChatClientException) as excinfo:
        wechat.client().fetch_access_token()
    assert excinfo.value.errcode == 40164
    fake.ip_whitelist = {"127.0.0.1"}
    fake.token_daily_quota = 2
    wechat.client().fetch_access_token()
    wechat.client().fetch_access_token()
    with pytest.raises(WeChatClientException) as excinfo:
        wechat.client().fetch_access_token()
    assert excinfo.value.errcode == 45009
    fake.advance(dt.timedelta(days=1))
    wechat.client().fetch_access_token()


def test_stable_token_rotates_only_on_force_refresh(wechat: Setup) -> None:
    def stable(force: bool = False) -> dict[str, object]:
        return httpx.post(f"{wechat.api}/cgi-bin/stable_token", trust_env=False, json={
            "grant_type": "client_credential", "appid": APPID, "secret": SECRET,
            "force_refresh": force}).json()

    first = stable()["access_token"]
    assert stable()["access_token"] == first
    forced = stable(force=True)["access_token"]
    assert forced != first
    assert stable(force=True)["errcode"] == 45011  # force_refresh at most every 30 s


def test_customer_service_messages_follow_the_48_hour_window(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "没有互动就不能发")
    assert excinfo.value.errcode == 45015
    fake.blocking.says(resident, "我要报修")
    for n in range(5):
        client.message.send_text(resident, f"第{n + 1}条")
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "第6条")
    assert excinfo.value.errcode == 45047
    assert excinfo.value.errmsg.startswith("out of response count limit rid: ")
    assert [s.text for s in fake.seen(resident) if s.kind == "custom"] == \
        ["第1条", "第2条", "第3条", "第4条", "第5条"]
    # wechatpy posts its JSON with no Content-Type; the fake reads it all the same.
    assert {c.content_type for c in fake.api_calls if c.path == "message/custom/send"} == {None}

    fake.blocking.says(resident, "还有一件事")
    client.message.send_text(resident, "新窗口")
    fake.advance(dt.timedelta(hours=48, seconds=1))
    client.fetch_access_token()  # the 2-hour token has long expired
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "两天后")
    assert excinfo.value.errcode == 45015


def test_a_menu_tap_opens_three_messages_for_a_minute(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    fake.blocking.taps(resident, "MY_CASES")
    for _ in range(3):
        client.message.send_text(resident, "你的案件")
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "第4条")
    assert excinfo.value.errcode == 45047
    fake.blocking.taps(resident, "MY_CASES")
    fake.advance(61)
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "一分钟后")
    assert excinfo.value.errcode == 45015
    unknown = "o" + "x" * 27
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(unknown, "谁")
    assert excinfo.value.errcode == 40003


async def test_template_messages_reach_followers_only(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    wechat.app.answer = lambda m: None
    follower = fake.add_user()
    data = {"case": {"value": "GD-20261123-0001"}, "status": {"value": "已办结"}}
    answer = await asyncio.to_thread(client.message.send_template, follower, TEMPLATE, data)
    assert answer["errcode"] == 0 and answer["msgid"]
    assert fake.seen(follower)[-1].kind == "template"
    assert fake.seen(follower)[-1].text == "案件 GD-20261123-0001：已办结"
    await fake.wait_for(lambda: any(isinstance(m, TemplateSendJobFinishEvent)
                                    and m.id == answer["msgid"] for m in wechat.app.received))

    gone = fake.add_user(following=False)
    with pytest.raises(WeChatClientException) as excinfo:
        await asyncio.to_thread(client.message.send_template, gone, TEMPLATE, data)
    assert excinfo.value.errcode == 43004
    with pytest.raises(WeChatClientException) as excinfo:
        await asyncio.to_thread(client.message.send_template, follower, "TPL_UNKNOWN", data)
    assert excinfo.value.errcode == 40037


def test_a_subscription_notification_spends_one_opt_in(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    data = {"thing1": {"value": "楼道灯已修好"}}
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_subscribe_message(resident, NOTICE, data)
    assert excinfo.value.errcode == 43101
    fake.grant_subscription(resident, NOTICE)
    client.message.send_subscribe_message(resident, NOTICE, data)
    assert fake.seen(resident)[-1].text == "楼道灯已修好"
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_subscribe_message(resident, NOTICE, data)
    assert excinfo.value.errcode == 43101


def test_menus_are_stored_and_taps_must_match_them(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    with pytest.raises(WeChatClientException) as excinfo:
        client.menu.create({"button": []})
    assert excinfo.value.errcode == 40016
    menu = {"button": [{"type": "click", "name": "我的案件", "key": "MY_CASES"},
                       {"name": "办事", "sub_button": [
                           {"type": "view", "name": "指南", "url": "https://example.org/guide"},
                           {"type": "click", "name": "找网格员", "key": "MY_GRID_WORKER"}]}]}
    client.menu.create(menu)
    assert client.menu.get()["menu"] == menu
    assert fake.sent("menu")[-1].payload == menu
    resident = fake.add_user()
    with pytest.raises(ValueError, match="no button"):
        fake.blocking.taps(resident, "NOT_IN_MENU")


async def test_qr_codes_carry_their_scene_into_follow_and_scan(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    wechat.app.answer = lambda m: "欢迎"
    permanent = await asyncio.to_thread(client.qrcode.create, {
        "action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "grid-3"}}})
    temporary = await asyncio.to_thread(client.qrcode.create, {
        "action_name": "QR_STR_SCENE", "expire_seconds": 600,
        "action_info": {"scene": {"scene_str": "event-42"}}})
    assert "expire_seconds" not in permanent and temporary["expire_seconds"] == 600
    async with httpx.AsyncClient(trust_env=False) as http:
        png = await http.get(f"{wechat.api}/cgi-bin/showqrcode",
                             params={"ticket": permanent["ticket"]})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")

    newcomer = "o" + "n" * 27
    followed = await fake.scans(newcomer, permanent["ticket"])
    assert followed.outcome == "delivered" and fake.follows(newcomer)
    scanned = await fake.scans(newcomer, temporary["ticket"])
    assert isinstance(wechat.app.received[0], SubscribeScanEvent)
    assert isinstance(wechat.app.received[1], ScanEvent)
    assert wechat.app.received[1].scene_id == "event-42"
    assert scanned.outcome == "delivered"
    fake.advance(601)
    with pytest.raises(ValueError, match="expired"):
        await fake.scans(newcomer, temporary["ticket"])


async def test_media_of_pushed_photos_and_voice_messages_downloads_for_three_days(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    photo = tiny_png((10, 20, 30))
    await fake.sends_image(resident, media_id="PHOTO1", data=photo, content_type="image/png")
    voice = await fake.sends_voice(resident, media_id="VOICE1", format="speex")
    assert isinstance(wechat.app.received[0], ImageMessage)
    assert wechat.app.received[0].media_id == "PHOTO1"

    # wechatpy hands back the HTTP response itself when the answer is not JSON.
    got = await asyncio.to_thread(client.media.download, "PHOTO1")
    assert got.content == photo and got.headers["Content-Type"] == "image/png"
    assert 'filename="PHOTO1.png"' in got.headers["Content-Disposition"]
    heard = await asyncio.to_thread(client.media.download, voice.fields["MediaId"])
    assert heard.headers["Content-Type"] == "audio/speex" and heard.content == fake.media("VOICE1")[0]  # type: ignore[index]
    # A default photo is a real PNG, different each time.
    await fake.sends_image(resident, media_id="PHOTO2")
    await fake.sends_image(resident, media_id="PHOTO3")
    second, third = fake.media("PHOTO2"), fake.media("PHOTO3")
    assert second and third and second[0].startswith(b"\x89PNG\r\n\x1a\n") and second[0] != third[0]

    # An id WeChat never issued, and one past its three days: 40007, as JSON where bytes would be.
    for media_id in ("NEVER-ISSUED", ""):
        with pytest.raises(WeChatClientException) as excinfo:
            await asyncio.to_thread(client.media.download, media_id)
        assert excinfo.value.errcode == 40007 and excinfo.value.errmsg.startswith("invalid media_id")
    async with httpx.AsyncClient(base_url=wechat.api, trust_env=False) as http:
        assert (await http.get("/cgi-bin/media/get", params={"media_id": "PHOTO1"})).json()["errcode"] == 41001
        forged = await http.get("/cgi-bin/media/get", params={"media_id": "PHOTO1", "access_token": "x"})
        assert forged.json()["errcode"] == 40014
    fake.advance(dt.timedelta(days=3))
    with pytest.raises(WeChatClientException) as excinfo:
        await asyncio.to_thread(wechat.client().media.download, "PHOTO1")
    assert excinfo.value.errcode == 40007


def test_injected_answers_come_once(wechat: Setup) -> None:
    fake, client = wechat.fake, wechat.client()
    resident = fake.add_user()
    fake.blocking.says(resident, "你好")
    client.fetch_access_token()
    fake.inject(-1)
    with pytest.raises(WeChatClientException) as excinfo:
        client.message.send_text(resident, "忙")
    assert excinfo.value.errcode == -1
    fake.inject(45009, path="message/custom/send")
    with pytest.raises(APILimitedException):
        client.message.send_text(resident, "配额")
    fake.inject(delay=0.05)
    client.message.send_text(resident, "慢但成功")
    assert fake.seen(resident)[-1].text == "慢但成功"


async def test_the_control_api_drives_a_resident_over_http(wechat: Setup) -> None:
    async with httpx.AsyncClient(base_url=wechat.api, trust_env=False, timeout=10) as http:
        openid = (await http.post("/_control/users", json={})).json()["openid"]
        pushed = (await http.post("/_control/says", json={"openid": openid, "text": "你好"})).json()
        assert pushed["outcome"] == "delivered" and pushed["text"] == "收到：你好"
        seen = (await http.get(f"/_control/seen/{openid}")).json()
        assert [s["kind"] for s in seen] == ["passive"]
        now = (await http.post("/_control/clock", json={"advance": 60})).json()["now"]
        assert now == wechat.fake.now()
