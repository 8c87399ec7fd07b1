"""Replays, stale pushes and plaintext downgrades of the WeChat callback, with pushes built by
wechatpy's own `WeChatCrypto` and `WeChatSigner`: an implementation independent of griddesk's
and of the loopback fake's."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

from bot.app import Services, build_app, build_services
from bot.settings import Settings
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.wechat import FakeWeChat, new_openid, render_xml

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
GH = "gh_griddesk0001"


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


class Pusher:
    """Pushes as WeChat would, built with wechatpy: plain, compat or safe."""

    def __init__(self, url: str, token: str, appid: str, key: str | None) -> None:
        self.url, self.token, self.appid, self.key = url, token, appid, key

    def request(self, fields: dict[str, Any], *, mode: str, timestamp: int,
                nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        nonce = nonce or str(secrets.randbelow(10**10))
        ts = str(timestamp)
        query = {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce,
                 "openid": str(fields["FromUserName"])}
        plain = render_xml(fields)
        if mode == "plain":
            return query, plain
        assert self.key is not None
        envelope = WeChatCrypto(self.token, self.key, self.appid).encrypt_message(plain.decode(), nonce, ts)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", envelope).group(1)  # type: ignore[union-attr]
        msg_signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
        query |= {"encrypt_type": "aes", "msg_signature": msg_signature}
        if mode == "safe":
            return query, f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
        return query, plain[:-len(b"</xml>")] + f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()

    def post(self, query: dict[str, str], body: bytes) -> httpx.Response:
        return httpx.post(self.url, params=query, content=body, headers={"Content-Type": "text/xml"},
                          timeout=10, trust_env=False)

    def decrypt(self, answer: httpx.Response, query: dict[str, str]) -> str:
        assert self.key is not None
        envelope = answer.text
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
        ts = re.search(r"<TimeStamp>(.*?)</TimeStamp>", envelope).group(1)  # type: ignore[union-attr]
        nonce = re.search(r"<Nonce><!\[CDATA\[(.*?)\]\]>", envelope).group(1)  # type: ignore[union-attr]
        return str(WeChatCrypto(self.token, self.key, self.appid).decrypt_message(envelope, signature, ts, nonce))


def text(openid: str, content: str, create_time: int, msg_id: int | None = None) -> dict[str, Any]:
    return {"ToUserName": GH, "FromUserName": openid, "CreateTime": create_time, "MsgType": "text",
            "Content": content, "MsgId": msg_id or secrets.randbelow(10**18)}


class App:
    def __init__(self, services: Services, served: ServedApp, pusher: Pusher, clock: FixedClock) -> None:
        self.services, self.served, self.pusher, self.clock = services, served, pusher, clock

    @property
    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def count(self, table: Any) -> int:
        with UnitOfWork(self.services.engine) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def start(clock: FixedClock) -> Iterator[Any]:
    running: list[App] = []
    token, appid = "griddesk-test-token", "wx" + secrets.token_hex(8)
    key = FakeWeChat(appid=appid).encoding_aes_key

    def make(database_url: str, *, aes: bool = True, **settings: Any) -> App:
        values: dict[str, Any] = {"database_url": database_url, "secret_key": "e2e-secret", "demo": True,
                                  "send_idle_seconds": 0.05, "wechat_token": token, "wechat_appid": appid,
                                  "wechat_encoding_aes_key": key if aes else None} | settings
        services = build_services(Settings(**values), clock=clock, classifier=KeywordClassifier())
        served = ServedApp(build_app(services)).start()
        app = App(services, served, Pusher(f"{served.url}/wechat", token, appid, key), clock)
        running.append(app)
        return app

    yield make
    for app in running:
        app.served.stop()
        app.services.engine.dispose()


def bind(app: App, openid: str) -> None:
    """The resident scans the grid sign of ZN-B03 (grid G01, 张丽)."""
    fields = {"ToUserName": GH, "FromUserName": openid, "CreateTime": app.now, "MsgType": "event",
              "Event": "SCAN", "EventKey": "b_ZN-B03", "Ticket": "gQ" + secrets.token_hex(20)}
    mode = "safe" if app.services.settings.wechat_encoding_aes_key else "plain"
    query, body = app.pusher.request(fields, mode=mode, timestamp=app.now)
    assert app.pusher.post(query, body).status_code == 200


# --------------------------------------------------------------------------- the reported attack


def test_a_logged_push_with_another_residents_status_query_is_refused(start: Any, database_url: str) -> None:
    """The review's attack on an account that runs in plain mode (no EncodingAESKey): the query of
    a push seen in a log, posted again with another body, asks for the victim's cases."""
    app = start(database_url, aes=False)
    victim = new_openid()
    bind(app, victim)
    logged, body = app.pusher.request(text(victim, "楼道灯坏了三天了", app.now), mode="plain", timestamp=app.now)
    first = app.pusher.post(logged, body)
    assert first.status_code == 200
    number = NUMBER.search(first.text).group(0)  # type: ignore[union-attr]

    app.clock.advance(dt.timedelta(seconds=20))
    forged = render_xml(text(victim, "/status", app.now))
    answer = app.pusher.post(logged, forged)
    assert answer.status_code == 403 and number not in answer.text
    # The same with a signed triple 30 days old, unused so far.
    old = app.now - 30 * 24 * 3600
    stale, _ = app.pusher.request(text(victim, "/status", old), mode="plain", timestamp=old)
    answer = app.pusher.post(stale, forged)
    assert answer.status_code == 403 and number not in answer.text
    assert app.count(t.Case) == 1


def test_only_pushes_inside_the_freshness_window_are_accepted(start: Any, sqlite_url: str) -> None:
    app = start(sqlite_url)
    statuses = {}
    for skew in (-301, 301, -299, 299):
        query, body = app.pusher.request(text(new_openid(), "你好", app.now), mode="safe",
                                         timestamp=app.now + skew)
        statuses[skew] = app.pusher.post(query, body).status_code
    assert statuses == {-301: 403, 301: 403, -299: 200, 299: 200}
    # The window follows WECHAT_FRESHNESS_SECONDS.
    narrow = start(sqlite_url, wechat_freshness_seconds=60)
    query, body = narrow.pusher.request(text(new_openid(), "你好", narrow.now), mode="safe",
                                        timestamp=narrow.now - 61)
    assert narrow.pusher.post(query, body).status_code == 403


# --------------------------------------------------------------------------- replays and WeChat's own resends


def test_a_used_timestamp_and_nonce_cannot_carry_another_message(start: Any, database_url: str) -> None:
    app = start(database_url, wechat_allow_plain=True)
    resident, other = new_openid(), new_openid()
    bind(app, resident)
    nonce = str(secrets.randbelow(10**10))
    query, body = app.pusher.request(text(resident, "楼道灯坏了", app.now), mode="safe", timestamp=app.now,
                                     nonce=nonce)
    assert NUMBER.search(app.pusher.decrypt(app.pusher.post(query, body), query))
    # Signed with the same timestamp and nonce, a different message: in safe mode (WeChat's
    # signature covers it, so only WeChat could make it) and in plain mode alike.
    again, other_body = app.pusher.request(text(other, "/status", app.now), mode="safe", timestamp=app.now,
                                           nonce=nonce)
    assert app.pusher.post(again, other_body).status_code == 403
    plain_query, plain_body = app.pusher.request(text(resident, "/status", app.now), mode="plain",
                                                 timestamp=app.now, nonce=nonce)
    assert app.pusher.post(plain_query, plain_body).status_code == 403
    assert app.count(t.Case) == 1


@pytest.mark.parametrize("mode", ["safe", "compat"])
def test_wechats_resend_of_the_same_push_is_answered_success_not_an_error(
        start: Any, sqlite_url: str, mode: str) -> None:
    """WeChat resends a push whose answer it did not get, perhaps with the very same timestamp
    and nonce: the resident must not see 「该公众号暂时无法提供服务」, and nothing happens twice."""
    app = start(sqlite_url)
    resident = new_openid()
    bind(app, resident)
    query, body = app.pusher.request(text(resident, "楼道灯坏了", app.now), mode=mode, timestamp=app.now)
    assert app.pusher.post(query, body).status_code == 200
    for _ in range(2):
        resent = app.pusher.post(query, body)
        assert (resent.status_code, resent.text) == (200, "success")
    assert app.count(t.Case) == 1


def test_the_replay_memory_is_shared_by_processes_through_the_database(
        start: Any, database_url: str) -> None:
    first, second = start(database_url), start(database_url)
    resident = new_openid()
    bind(first, resident)
    nonce = str(secrets.randbelow(10**10))
    query, body = first.pusher.request(text(resident, "楼道灯坏了", first.now), mode="safe",
                                       timestamp=first.now, nonce=nonce)
    assert first.pusher.post(query, body).status_code == 200
    again, other = second.pusher.request(text(resident, "/status", second.now), mode="safe",
                                         timestamp=second.now, nonce=nonce)
    assert second.pusher.post(again, other).status_code == 403


def test_the_replay_memory_is_shared_by_processes_through_redis(
        start: Any, sqlite_url: str, tmp_path: Any, redis_url: str) -> None:
    # Two processes with their own databases: only Redis can tell the second about the first.
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    import shutil

    shutil.copy(sqlite_url.removeprefix("sqlite:///"), tmp_path / "other.db")
    first, second = start(sqlite_url, redis_url=redis_url), start(other_db, redis_url=redis_url)
    resident = new_openid()
    nonce = str(secrets.randbelow(10**10))
    query, body = first.pusher.request(text(resident, "你好", first.now), mode="safe", timestamp=first.now,
                                       nonce=nonce)
    assert first.pusher.post(query, body).status_code == 200
    again, other = second.pusher.request(text(resident, "/status", second.now), mode="safe",
                                         timestamp=second.now, nonce=nonce)
    assert second.pusher.post(again, other).status_code == 403
    with UnitOfWork(first.services.engine) as uow:
        assert uow.session.scalar(select(func.count()).select_from(t.UsedNonce)) == 0


# --------------------------------------------------------------------------- the plaintext downgrade


def test_with_a_key_set_a_plaintext_push_is_refused_unless_allowed(start: Any, sqlite_url: str) -> None:
    strict = start(sqlite_url)
    resident = new_openid()
    bind(strict, resident)
    query, body = strict.pusher.request(text(resident, "/status", strict.now), mode="plain",
                                        timestamp=strict.now)
    assert strict.pusher.post(query, body).status_code == 403
    lenient = start(sqlite_url, wechat_allow_plain=True)
    query, body = lenient.pusher.request(text(resident, "/status", lenient.now), mode="plain",
                                         timestamp=lenient.now)
    answer = lenient.pusher.post(query, body)
    assert answer.status_code == 200 and "还没有工单" in answer.text


def test_in_compatible_mode_the_encrypted_part_decides(start: Any, sqlite_url: str) -> None:
    app = start(sqlite_url)
    resident, victim = new_openid(), new_openid()
    bind(app, resident)
    bind(app, victim)
    victims = app.pusher.request(text(victim, "楼道灯坏了", app.now), mode="safe", timestamp=app.now)
    number = NUMBER.search(app.pusher.decrypt(app.pusher.post(*victims), victims[0])).group(0)  # type: ignore[union-attr]
    # The plaintext part names the victim and asks for their cases; the encrypted part is the
    # resident's own greeting.
    query, body = app.pusher.request(text(resident, "你好", app.now), mode="compat", timestamp=app.now)
    tampered = body.replace(resident.encode(), victim.encode(), 1).replace("你好".encode(), b"/status", 1)
    assert tampered.count(victim.encode()) == 1 and b"/status" in tampered
    answer = app.pusher.post(query | {"openid": resident}, tampered)
    assert answer.status_code == 200
    reply = app.pusher.decrypt(answer, query)
    assert resident in reply and victim not in reply and number not in reply
