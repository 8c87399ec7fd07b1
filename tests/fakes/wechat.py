"""A loopback WeChat Official Account (公众号): it pushes to the app as WeChat does, and it serves
the API the app calls, as PROTOCOLS.md §2.3 describes.

Push side: signed (and, in compat or safe mode, encrypted) XML posted to the app's URL, a
deadline per attempt, three attempts, and a verdict on the answer. Whatever the resident would
see lands in a per-openid transcript: passive replies, customer-service messages (客服消息),
template messages, subscription notifications (订阅通知) and WeChat's own error line.

API side: `/cgi-bin/token`, `stable_token`, `message/custom/send`, `message/template/send`,
`message/subscribe/bizsend`, `menu/create|get|delete`, `qrcode/create`, `showqrcode` and
`media/get` (the bytes of the photos and voice messages the fake pushed, for three days), each
answering HTTP 200 with `errcode`/`errmsg` as WeChat does. Time comes from an injectable
clock, so the 48 h and 1 min windows and token expiry are tested without waiting. `inject`
makes the next call fail as a broken server or network does (`FAULTS`): an HTML 500 page,
cut-off JSON, a 404 with a text body, a connection dropped mid-body, or no answer at all.
Tokens, injected faults and the endpoint around each handler are WeCom's too
(tests/fakes/weixin_api.py).

Usage:

    fake = FakeWeChat(app_url=f"{app}/wechat", templates={"TPL_PROGRESS": "进度：{{status.DATA}}"})
    with serve(fake.api_app) as api:            # the app under test calls `api`
        resident = fake.add_user()
        result = await fake.says(resident, "楼道灯坏了三天")
        assert result.outcome == "delivered"
        assert "已受理" in fake.seen(resident)[-1].text
        fake.advance(dt.timedelta(hours=49))     # the 客服消息 window has closed

Signatures and AES come from `tests.fakes.wechat_crypto`, never from wechatpy, so the fake
cannot share a bug with the code it checks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import io
import json
import re
import secrets
import string
import struct
import time
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
import segno
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import wechat_crypto as crypto
from tests.fakes.weixin_api import TOKEN_LIFETIME, BadRequest, Call, FakeWeixinApi, rid

T = TypeVar("T")

# What the resident sees when the app's answer is late, missing or invalid (PROTOCOLS.md §2.1).
UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"

Mode = Literal["plain", "compat", "safe"]
MODES: tuple[str, ...] = ("plain", "compat", "safe")
REPLY_TYPES = frozenset({"text", "image", "voice", "video", "music", "news"})
MESSAGE_WINDOW = (48 * 3600, 5)     # a user's message: 5 customer-service messages in 48 h
INTERACTION_WINDOW = (60, 3)        # a menu tap, follow or scan: 3 in 1 min
STABLE_DAILY_QUOTA = 10000
STABLE_FORCE_DAILY_QUOTA = 20       # force_refresh: 20 a day, 30 s apart (PROTOCOLS.md §2.1)
# Temporary media (the MediaId of a pushed photo or voice message) lives three days.
MEDIA_LIFETIME = 3 * 24 * 3600
# WeChat counts daily quotas by the Beijing calendar day.
BEIJING = dt.timezone(dt.timedelta(hours=8))

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40023: "invalid sub button size",
    40037: "invalid template_id",
    40164: "invalid ip, not in whitelist",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    44004: "empty content",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
}


def new_openid() -> str:
    """A 28-character openid shaped like WeChat's."""
    return "o" + crypto.random_text(27, string.ascii_letters + string.digits + "_-")


def tiny_png(rgb: tuple[int, int, int] | None = None) -> bytes:
    """A valid 1×1 PNG of one colour (random by default, so two photos differ)."""
    r, g, b = rgb if rgb is not None else tuple(secrets.token_bytes(3))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1×1, 8-bit RGB
    pixels = zlib.compress(bytes([0, r, g, b]))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _error(code: int, errmsg: str | None = None) -> dict[str, Any]:
    # Real errmsg values end with a request id that changes every call (PROTOCOLS.md §2.1).
    return {"errcode": code, "errmsg": f"{errmsg or ERRMSG.get(code, 'error')} rid: {rid()}"}


OK: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}


# --------------------------------------------------------------------------- recorded values


@dataclass(frozen=True)
class Seen:
    """One thing that appeared in the resident's chat with the account.

    kind:
      passive   - the app's answer to a push, delivered in the same exchange
      custom    - a customer-service message (客服消息) sent later through the API
      template  - a template message, rendered as its text
      subscribe - a subscription notification (订阅通知), rendered as its text
      error     - WeChat's own 「该公众号暂时无法提供服务，请稍后再试」
    """

    kind: str
    text: str
    at: int
    msg_type: str = "text"


@dataclass(frozen=True)
class Attempt:
    """One POST of a push. `status` is None when there was no HTTP answer (timeout or
    connection error), and `error` says which."""

    number: int
    query: Mapping[str, str]
    body: bytes
    status: int | None
    reply: bytes
    error: str | None
    elapsed: float


@dataclass(frozen=True)
class PushResult:
    """What became of one push.

    outcome:
      nothing   - the app answered `success` or an empty body; the resident sees nothing
      delivered - a valid passive reply; `seen` holds what the resident sees
      error     - no valid answer in time; the resident sees UNAVAILABLE (`reason` says why)
    """

    openid: str
    xml: bytes
    fields: Mapping[str, Any]
    attempts: tuple[Attempt, ...]
    outcome: str
    seen: Seen | None
    reason: str

    @property
    def msg_id(self) -> int | None:
        value = self.fields.get("MsgId")
        return int(value) if value is not None else None

    @property
    def text(self) -> str | None:
        return self.seen.text if self.seen else None


@dataclass(frozen=True)
class Verification:
    passed: bool
    echostr: str
    status: int | None
    body: bytes
    error: str | None


@dataclass(frozen=True)
class Sent:
    """Something the app sent through the API and WeChat accepted.

    kind: custom | template | subscribe | menu | qrcode
    """

    kind: str
    openid: str | None
    payload: Mapping[str, Any]
    text: str
    at: int
    msgid: int | None = None


@dataclass(frozen=True)
class Message:
    """A push ready to send: the plaintext fields in WeChat's order."""

    openid: str
    fields: Mapping[str, Any]
    # Pushes the resident caused; their answers appear in the resident's chat. An
    # unsubscribe or a template-job report reaches nobody.
    visible: bool = True


@dataclass(frozen=True)
class QrCode:
    ticket: str
    scene: str
    url: str
    permanent: bool
    expires_at: float | None


@dataclass
class _Window:
    closes_at: float
    limit: int
    used: int = 0


@dataclass
class _User:
    openid: str
    following: bool = True
    windows: dict[str, _Window] = field(default_factory=dict)
    opt_ins: dict[str, int] = field(default_factory=dict)
    last_create_time: int = 0


@dataclass(frozen=True)
class _Media:
    data: bytes
    content_type: str
    expires_at: float


class _Number(str):
    """A value WeChat writes without CDATA (coordinates, scale, precision)."""


def _cdata(value: str) -> str:
    # "]]>" inside CDATA ends it early; split it across two sections so any text survives.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_xml(fields: Mapping[str, Any]) -> bytes:
    parts = ["<xml>"]
    for name, value in fields.items():
        if isinstance(value, (int, _Number)) and not isinstance(value, bool):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}>{_cdata(str(value))}</{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


async def post_push(client: httpx.AsyncClient, url: str, query: Mapping[str, str], body: bytes,
                    timeout: float) -> tuple[int | None, bytes, str | None]:
    """One attempt at a push, as WeChat and WeCom post them: (HTTP status, answer, None), or
    (None, b"", why) when no answer came within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            response = await client.post(url, params=query, content=body, headers={"Content-Type": "text/xml"})
    except TimeoutError:
        return None, b"", f"no answer within {timeout} s"
    except httpx.HTTPError as exc:
        return None, b"", f"{type(exc).__name__}: {exc}"
    return response.status_code, response.content, None


class _ReplyError(Exception):
    """The app's answer is not something WeChat accepts."""


# --------------------------------------------------------------------------- the fake


class FakeWeChat(FakeWeixinApi):
    """WeChat, both sides, for one Official Account.

    `api_app` is the ASGI app of the API (serve it on 127.0.0.1); the push methods call
    `app_url` with httpx. Push methods are coroutines; `fake.blocking.<method>(...)` runs the
    same method from synchronous code.
    """

    def __init__(
        self,
        *,
        token: str = "griddesk-test-token",
        appid: str | None = None,
        secret: str | None = None,
        encoding_aes_key: str | None = None,
        previous_encoding_aes_key: str | None = None,
        gh_id: str = "gh_griddesk0001",
        mode: Mode = "safe",
        app_url: str | None = None,
        attempt_timeout: float = 5.0,
        attempts: int = 3,
        clock: Any = None,
        templates: Mapping[str, str] | Iterable[str] = (),
        subscribe_templates: Mapping[str, str] | Iterable[str] = (),
        ip_whitelist: Iterable[str] | None = None,
        token_daily_quota: int = 2000,
        max_text_bytes: int | None = 2048,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode is one of {MODES}, not {mode!r}")
        super().__init__(clock)
        self.token = token
        self.appid = appid or "wx" + secrets.token_hex(8)
        self.secret = secret or secrets.token_hex(16)
        self.encoding_aes_key = encoding_aes_key or crypto.new_encoding_aes_key()
        self.previous_encoding_aes_key = previous_encoding_aes_key
        crypto.aes_key(self.encoding_aes_key)
        self.gh_id = gh_id
        self.mode: Mode = mode
        self.app_url = app_url
        self.attempt_timeout = attempt_timeout
        self.attempts = attempts
        self.templates = _templates(templates)
        self.subscribe_templates = _templates(subscribe_templates)
        self.ip_whitelist = set(ip_whitelist) if ip_whitelist is not None else None
        self.token_daily_quota = token_daily_quota
        # Observed by users, not documented: longer text replies do not arrive (PROTOCOLS.md §2.1).
        self.max_text_bytes = max_text_bytes

        self._users: dict[str, _User] = {}
        self._seen: dict[str, list[Seen]] = {}
        self._sent: list[Sent] = []
        self._pushes: list[PushResult] = []
        self._fetches: dict[tuple[str, dt.date], int] = {}
        self._last_force_refresh: float | None = None
        self._qrcodes: dict[str, QrCode] = {}
        self._media: dict[str, _Media] = {}
        self.menu: dict[str, Any] | None = None
        self._next_msg_id = 24_000_000_000_000_000 + secrets.randbelow(10**15)
        self.blocking = _Blocking(self)
        self.api_app = self._build_api_app()

    # ----------------------------------------------------------------------- clock

    def set_time(self, when: dt.datetime) -> None:
        self.clock.set(when)

    # ----------------------------------------------------------------------- users

    def add_user(self, openid: str | None = None, *, following: bool = True) -> str:
        """A resident known to the account, without a push: someone who followed before the
        test began (or, with following=False, who has since left)."""
        openid = openid or new_openid()
        with self._lock:
            user = self._users.setdefault(openid, _User(openid))
            user.following = following
        return openid

    def wrote(self, openid: str) -> None:
        """The resident wrote to the account (its 48 h customer-service window opens), without
        a push to the app: for tests of the sending side alone."""
        self._record_interaction(self.text(openid, "…"))

    def follows(self, openid: str) -> bool:
        with self._lock:
            user = self._users.get(openid)
            return bool(user and user.following)

    def grant_subscription(self, openid: str, template_id: str, times: int = 1) -> None:
        """The resident accepts `times` one-time subscription notifications for a template."""
        with self._lock:
            user = self._users.setdefault(openid, _User(openid))
            user.opt_ins[template_id] = user.opt_ins.get(template_id, 0) + times

    # ----------------------------------------------------------------------- transcripts

    def seen(self, openid: str) -> list[Seen]:
        """Everything this resident has seen in the chat, oldest first."""
        with self._lock:
            return list(self._seen.get(openid, []))

    def sent(self, kind: str | None = None, openid: str | None = None) -> list[Sent]:
        """What the app sent through the API and WeChat accepted, oldest first."""
        with self._lock:
            return [s for s in self._sent
                    if (kind is None or s.kind == kind) and (openid is None or s.openid == openid)]

    @property
    def pushes(self) -> list[PushResult]:
        with self._lock:
            return list(self._pushes)

    @property
    def qrcodes(self) -> dict[str, QrCode]:
        with self._lock:
            return dict(self._qrcodes)

    def wait_for_blocking(self, condition: Callable[[], T], timeout: float = 5.0) -> T:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the condition did not hold within {timeout} s")
                self._changed.wait(min(remaining, 0.05))

    def _note(self, openid: str | None, seen: Seen | None = None, sent: Sent | None = None) -> None:
        with self._changed:
            if seen is not None and openid is not None:
                self._seen.setdefault(openid, []).append(seen)
            if sent is not None:
                self._sent.append(sent)
            self._changed.notify_all()

    # ----------------------------------------------------------------------- control

    def rotate_key(self, new_key: str | None = None) -> str:
        """Change the EncodingAESKey, keeping the old one as the previous key."""
        new_key = new_key or crypto.new_encoding_aes_key()
        crypto.aes_key(new_key)
        with self._lock:
            self.previous_encoding_aes_key = self.encoding_aes_key
            self.encoding_aes_key = new_key
        return new_key

    # ----------------------------------------------------------------------- message builders

    def _base(self, openid: str, msg_type: str) -> dict[str, Any]:
        with self._lock:
            user = self._users.setdefault(openid, _User(openid))
            # CreateTime is whole seconds. Two pushes of one resident in the same second of a
            # frozen test clock would share the FromUserName+CreateTime dedupe key of events
            # (PROTOCOLS.md §2.2), so each push of a resident takes a strictly later second.
            create_time = max(self.now(), user.last_create_time + 1)
            user.last_create_time = create_time
        return {"ToUserName": self.gh_id, "FromUserName": openid, "CreateTime": create_time,
                "MsgType": msg_type}

    def _msg_id(self) -> int:
        with self._lock:
            self._next_msg_id += 1 + secrets.randbelow(1000)
            return self._next_msg_id

    def text(self, openid: str, content: str) -> Message:
        fields = self._base(openid, "text") | {"Content": content, "MsgId": self._msg_id()}
        return Message(openid, fields)

    def _issue_media(self, media_id: str, data: bytes, content_type: str) -> None:
        """Keep the bytes behind a pushed MediaId, downloadable through `media/get` for three days."""
        with self._lock:
            self._media[media_id] = _Media(data, content_type, self.now() + MEDIA_LIFETIME)

    def media(self, media_id: str) -> tuple[bytes, str] | None:
        """(bytes, content type) the fake serves for a MediaId, or None when it serves none."""
        with self._lock:
            kept = self._media.get(media_id)
        return (kept.data, kept.content_type) if kept else None

    def image(self, openid: str, *, pic_url: str | None = None, media_id: str | None = None,
              data: bytes | None = None, content_type: str | None = None) -> Message:
        """A photo; its bytes (`data`, else a tiny PNG of a random colour) are what `media/get`
        serves for its MediaId."""
        media_id = media_id or crypto.random_text(64)
        if data is None:
            data, content_type = tiny_png(), "image/png"
        self._issue_media(media_id, data, content_type or "image/jpeg")
        pic_url = pic_url or f"http://mmbiz.qpic.cn/mmbiz_jpg/{crypto.random_text(40)}/0"
        fields = self._base(openid, "image") | {"PicUrl": pic_url, "MediaId": media_id,
                                                "MsgId": self._msg_id()}
        return Message(openid, fields)

    def voice(self, openid: str, *, media_id: str | None = None, format: str = "amr",
              recognition: str | None = None, data: bytes | None = None) -> Message:
        """A voice message; `Recognition` is present only when `recognition` is not None (it is
        often empty, PROTOCOLS.md §2.1). Its bytes (`data`, else a short AMR-looking blob) are
        what `media/get` serves for its MediaId."""
        media_id = media_id or crypto.random_text(64)
        if data is None:
            data = b"#!AMR\n" + secrets.token_bytes(32)
        self._issue_media(media_id, data, f"audio/{format}")
        fields = self._base(openid, "voice") | {"MediaId": media_id, "Format": format}
        if recognition is not None:
            fields["Recognition"] = recognition
        fields["MsgId"] = self._msg_id()
        return Message(openid, fields)

    def location(self, openid: str, latitude: float | str, longitude: float | str, *,
                 scale: int = 15, label: str = "") -> Message:
        # Location_X is the latitude and Location_Y the longitude (PROTOCOLS.md §0, trap 11).
        fields = self._base(openid, "location") | {
            "Location_X": _Number(latitude), "Location_Y": _Number(longitude),
            "Scale": scale, "Label": label, "MsgId": self._msg_id()}
        return Message(openid, fields)

    def subscribe(self, openid: str, *, scene: str | None = None,
                  ticket: str | None = None) -> Message:
        fields = self._base(openid, "event") | {"Event": "subscribe"}
        if scene is not None:
            fields["EventKey"] = f"qrscene_{scene}"
            fields["Ticket"] = ticket or self._ticket_for(scene)
        return Message(openid, fields)

    def unsubscribe(self, openid: str) -> Message:
        fields = self._base(openid, "event") | {"Event": "unsubscribe", "EventKey": ""}
        return Message(openid, fields, visible=False)

    def click(self, openid: str, key: str) -> Message:
        return Message(openid, self._base(openid, "event") | {"Event": "CLICK", "EventKey": key})

    def location_event(self, openid: str, latitude: float | str, longitude: float | str,
                       precision: float | str = "65.000000") -> Message:
        fields = self._base(openid, "event") | {
            "Event": "LOCATION", "Latitude": _Number(latitude), "Longitude": _Number(longitude),
            "Precision": _Number(precision)}
        return Message(openid, fields)

    def scan(self, openid: str, scene: str, *, ticket: str | None = None) -> Message:
        fields = self._base(openid, "event") | {"Event": "SCAN", "EventKey": scene,
                                                "Ticket": ticket or self._ticket_for(scene)}
        return Message(openid, fields)

    def template_job_finished(self, openid: str, msgid: int, status: str = "success") -> Message:
        fields = self._base(openid, "event") | {"Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid,
                                                "Status": status}
        return Message(openid, fields, visible=False)

    # ----------------------------------------------------------------------- resident actions

    def _writer(self, openid: str) -> None:
        with self._lock:
            user = self._users.setdefault(openid, _User(openid))
            if not user.following:
                raise ValueError(f"{openid} does not follow the account and cannot write to it")

    async def says(self, openid: str, content: str) -> PushResult:
        self._writer(openid)
        return await self.push(self.text(openid, content))

    async def sends_image(self, openid: str, **kwargs: Any) -> PushResult:
        self._writer(openid)
        return await self.push(self.image(openid, **kwargs))

    async def sends_voice(self, openid: str, **kwargs: Any) -> PushResult:
        self._writer(openid)
        return await self.push(self.voice(openid, **kwargs))

    async def shares_location(self, openid: str, latitude: float | str, longitude: float | str,
                              **kwargs: Any) -> PushResult:
        self._writer(openid)
        return await self.push(self.location(openid, latitude, longitude, **kwargs))

    async def reports_location(self, openid: str, latitude: float | str, longitude: float | str,
                               precision: float | str = "65.000000") -> PushResult:
        self._writer(openid)
        return await self.push(self.location_event(openid, latitude, longitude, precision))

    async def taps(self, openid: str, key: str) -> PushResult:
        self._writer(openid)
        with self._lock:
            keys = _menu_keys(self.menu) if self.menu else None
        if keys is not None and key not in keys:
            raise ValueError(f"the current menu has no button with key {key!r}: {sorted(keys)}")
        return await self.push(self.click(openid, key))

    async def follow(self, openid: str | None = None, *, scene: str | None = None) -> PushResult:
        """The resident follows the account, through a parameterised QR code when `scene` is set."""
        openid = openid or new_openid()
        if self.follows(openid):
            raise ValueError(f"{openid} already follows the account")
        return await self.push(self.subscribe(openid, scene=scene))

    async def scans(self, openid: str, ticket: str) -> PushResult:
        """The resident scans a QR code the app created: SCAN for a follower, else subscribe."""
        with self._lock:
            qr = self._qrcodes.get(ticket)
        if qr is None:
            raise ValueError(f"no QR code with ticket {ticket!r} was created")
        if qr.expires_at is not None and self.now() >= qr.expires_at:
            raise ValueError(f"the QR code {ticket!r} has expired")
        if self.follows(openid):
            return await self.push(self.scan(openid, qr.scene, ticket=ticket))
        return await self.push(self.subscribe(openid, scene=qr.scene, ticket=ticket))

    async def unfollow(self, openid: str) -> PushResult:
        return await self.push(self.unsubscribe(openid))

    # ----------------------------------------------------------------------- pushing

    def _record_interaction(self, message: Message) -> None:
        """What WeChat learns from the push, whatever the app answers."""
        fields = message.fields
        now = self.now()
        with self._lock:
            user = self._users.setdefault(message.openid, _User(message.openid))
            if fields["MsgType"] != "event":
                user.following = True
                user.windows["message"] = _Window(now + MESSAGE_WINDOW[0], MESSAGE_WINDOW[1])
                return
            event = fields["Event"]
            if event == "subscribe":
                user.following = True
            elif event == "unsubscribe":
                user.following = False
                user.windows.clear()
            if event in ("subscribe", "CLICK", "SCAN"):
                user.windows["interaction"] = _Window(now + INTERACTION_WINDOW[0],
                                                      INTERACTION_WINDOW[1])

    async def push(self, message: Message) -> PushResult:
        """Send one message or event to the app, with WeChat's retries, and judge the answer."""
        self._record_interaction(message)
        plain = render_xml(message.fields)
        result = await self._deliver(message.openid, plain, message.fields, mode=self.mode,
                                     visible=message.visible)
        return result

    async def push_raw(self, body: bytes, *, openid: str | None = None, sign: bool = True,
                       encrypt: bool = False, timestamp: str | None = None) -> PushResult:
        """POST an arbitrary body (garbage, a DOCTYPE with entities, ...) the way WeChat posts.

        encrypt=True wraps `body` as the plaintext of a safe-mode envelope. sign=False sends
        signatures that do not match. The answer is judged like any other push."""
        openid = openid or new_openid()
        return await self._deliver(openid, body, {}, mode="safe" if encrypt else "plain",
                                   visible=True, sign=sign, timestamp=timestamp)

    async def _deliver(self, openid: str, plain: bytes, fields: Mapping[str, Any], *,
                       mode: str, visible: bool, sign: bool = True,
                       timestamp: str | None = None) -> PushResult:
        if not self.app_url:
            raise RuntimeError("set app_url before pushing")
        key = self.encoding_aes_key
        encrypted = crypto.encrypt(plain, key, self.appid) if mode != "plain" else None
        if mode == "safe":
            body = render_xml({"ToUserName": self.gh_id, "Encrypt": encrypted})
        elif mode == "compat":
            tail = f"<Encrypt>{_cdata(encrypted or '')}</Encrypt></xml>".encode()
            body = plain[:plain.rindex(b"</xml>")] + tail
        else:
            body = plain

        attempts: list[Attempt] = []
        verdict: tuple[str, Seen | None, str] | None = None
        async with httpx.AsyncClient(trust_env=False, timeout=self.attempt_timeout) as client:
            for number in range(1, self.attempts + 1):
                # The same body each time, with a fresh timestamp, nonce and signatures.
                ts = timestamp or str(self.now())
                nonce = crypto.nonce()
                query = {"signature": crypto.signature(self.token, ts, nonce), "timestamp": ts,
                         "nonce": nonce, "openid": openid}
                if encrypted is not None:
                    query["encrypt_type"] = "aes"
                    query["msg_signature"] = crypto.signature(self.token, ts, nonce, encrypted)
                if not sign:
                    query = {k: (secrets.token_hex(20) if k.endswith("signature") else v)
                             for k, v in query.items()}
                started = time.monotonic()
                status, reply, error = await post_push(client, self.app_url, query, body, self.attempt_timeout)
                attempts.append(Attempt(number, query, body, status, reply, error,
                                        time.monotonic() - started))
                if status == 200:
                    verdict = self._judge(reply, openid, key, mode)
                    break
        if verdict is None:
            last = attempts[-1]
            why = last.error or f"HTTP {last.status}"
            verdict = ("error", None, f"no valid answer after {len(attempts)} attempts ({why})")
        outcome, seen, reason = verdict
        if outcome == "error":
            seen = Seen("error", UNAVAILABLE, self.now())
        result = PushResult(openid, plain, dict(fields), tuple(attempts), outcome, seen, reason)
        with self._changed:
            self._pushes.append(result)
            self._changed.notify_all()
        if visible and seen is not None:
            self._note(openid, seen)
        return result

    def _judge(self, reply: bytes, openid: str, key: str,
               mode: str) -> tuple[str, Seen | None, str]:
        """PROTOCOLS.md §2.3 item 5: nothing, delivered, or the error line."""
        if reply in (b"", b"success"):
            return "nothing", None, "the app answered success or nothing"
        try:
            root = _parse(reply)
            encrypt = root.findtext("Encrypt")
            if encrypt is not None:
                if mode == "plain":
                    raise _ReplyError("an encrypted reply in plain mode")
                ts, nonce = root.findtext("TimeStamp"), root.findtext("Nonce")
                if not ts or not nonce:
                    raise _ReplyError("the encrypted reply lacks TimeStamp or Nonce")
                expected = crypto.signature(self.token, ts, nonce, encrypt)
                if root.findtext("MsgSignature") != expected:
                    raise _ReplyError("MsgSignature does not match")
                try:
                    inner, receiver = crypto.decrypt(encrypt, key)
                except crypto.CryptoError as exc:
                    raise _ReplyError(
                        f"the reply does not decrypt with the push's key: {exc}") from exc
                if receiver != self.appid:
                    raise _ReplyError(
                        f"the reply is encrypted for {receiver!r}, not {self.appid!r}")
                root = _parse(inner)
            elif mode == "safe":
                raise _ReplyError("safe mode needs an encrypted reply")
            seen = self._check_reply(root, openid)
        except _ReplyError as exc:
            return "error", None, str(exc)
        return "delivered", seen, "a valid passive reply"

    def _check_reply(self, root: ET.Element, openid: str) -> Seen:
        def need(name: str, element: ET.Element = root) -> str:
            value = element.findtext(name)
            if value is None or not value.strip():
                raise _ReplyError(f"the reply has no {name}")
            return value

        if need("ToUserName") != openid:
            raise _ReplyError(f"ToUserName is {root.findtext('ToUserName')!r}, not {openid!r}")
        if need("FromUserName") != self.gh_id:
            raise _ReplyError(
                f"FromUserName is {root.findtext('FromUserName')!r}, not {self.gh_id!r}")
        create_time = need("CreateTime").strip()
        if not create_time.isdigit():
            raise _ReplyError(f"CreateTime {create_time!r} is not an integer")
        msg_type = need("MsgType")
        if msg_type not in REPLY_TYPES:
            raise _ReplyError(f"MsgType {msg_type!r} is not a reply type")
        at = self.now()
        if msg_type == "text":
            content = need("Content")
            size = len(content.encode("utf-8"))
            if self.max_text_bytes is not None and size > self.max_text_bytes:
                raise _ReplyError(f"the text reply is {size} bytes, over {self.max_text_bytes}")
            return Seen("passive", content, at)
        if msg_type in ("image", "voice", "video"):
            media = root.find(msg_type.capitalize())
            if media is None:
                raise _ReplyError(f"the {msg_type} reply has no {msg_type.capitalize()} element")
            return Seen("passive", f"[{msg_type}] {need('MediaId', media)}", at, msg_type)
        if msg_type == "music":
            music = root.find("Music")
            if music is None:
                raise _ReplyError("the music reply has no Music element")
            return Seen("passive", f"[music] {music.findtext('Title') or ''}", at, msg_type)
        items = root.findall("Articles/item")
        if not items or need("ArticleCount").strip() != str(len(items)):
            raise _ReplyError("the news reply's ArticleCount does not match its items")
        return Seen("passive", "\n".join(i.findtext("Title") or "" for i in items), at, msg_type)

    async def verify_url(self, *, echostr: str | None = None, sign: bool = True) -> Verification:
        """The server-configuration check: GET with a plaintext echostr, in every mode."""
        if not self.app_url:
            raise RuntimeError("set app_url before verifying")
        echostr = echostr or str(secrets.randbelow(10**19))
        ts, nonce = str(self.now()), crypto.nonce()
        signature = crypto.signature(self.token, ts, nonce) if sign else secrets.token_hex(20)
        query = {"signature": signature, "timestamp": ts, "nonce": nonce, "echostr": echostr}
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=self.attempt_timeout) as client:
                async with asyncio.timeout(self.attempt_timeout):
                    response = await client.get(self.app_url, params=query)
        except (TimeoutError, httpx.HTTPError) as exc:
            return Verification(False, echostr, None, b"", f"{type(exc).__name__}: {exc}")
        passed = response.status_code == 200 and response.content == echostr.encode()
        return Verification(passed, echostr, response.status_code, response.content, None)

    # ----------------------------------------------------------------------- API side

    def _build_api_app(self) -> Starlette:
        api = self._api
        routes = [
            Route("/cgi-bin/token", api(self._token_endpoint, auth=False), methods=["GET"]),
            Route("/cgi-bin/stable_token", api(self._stable_token, auth=False), methods=["POST"]),
            Route("/cgi-bin/message/custom/send", api(self._custom_send), methods=["POST"]),
            Route("/cgi-bin/message/template/send", api(self._template_send), methods=["POST"]),
            Route("/cgi-bin/message/subscribe/bizsend", api(self._bizsend), methods=["POST"]),
            Route("/cgi-bin/menu/create", api(self._menu_create), methods=["POST"]),
            Route("/cgi-bin/menu/get", api(self._menu_get), methods=["GET"]),
            Route("/cgi-bin/menu/delete", api(self._menu_delete), methods=["GET", "POST"]),
            Route("/cgi-bin/qrcode/create", api(self._qrcode_create), methods=["POST"]),
            Route("/cgi-bin/showqrcode", self._showqrcode, methods=["GET"]),
            Route("/cgi-bin/media/get", api(self._media_get), methods=["GET"]),
        ]
        routes += _control_routes(self)
        return Starlette(routes=routes)

    def _error(self, code: int, errmsg: str | None = None) -> dict[str, Any]:
        return _error(code, errmsg)

    # tokens

    def _count_fetch(self, series: str) -> bool:
        day = dt.datetime.fromtimestamp(self.now(), BEIJING).date()
        count = self._fetches.get((series, day), 0)
        quota = {"token": self.token_daily_quota, "stable": STABLE_DAILY_QUOTA,
                 "stable_force": STABLE_FORCE_DAILY_QUOTA}[series]
        if count >= quota:
            return False
        self._fetches[(series, day)] = count + 1
        return True

    def _credentials(self, call: Call, grant_type: Any, appid: Any, secret: Any) -> None:
        if grant_type != "client_credential":
            raise BadRequest(40002)
        if appid != self.appid:
            raise BadRequest(40013)
        if not isinstance(secret, str) or not secrets.compare_digest(secret, self.secret):
            raise BadRequest(40001)
        if self.ip_whitelist is not None and call.client_ip not in self.ip_whitelist:
            raise BadRequest(40164, f"invalid ip {call.client_ip}, not in whitelist")

    def _token_endpoint(self, call: Call) -> dict[str, Any]:
        q = call.request.query_params
        self._credentials(call, q.get("grant_type"), q.get("appid"), q.get("secret"))
        if not self._count_fetch("token"):
            raise BadRequest(45009)
        token = self._issue_token("token")
        return {"access_token": token.value, "expires_in": TOKEN_LIFETIME}

    def _stable_token(self, call: Call) -> dict[str, Any]:
        """Its own series of tokens, which rotates only on force_refresh (PROTOCOLS.md §2.1)."""
        data = call.json()
        self._credentials(call, data.get("grant_type"), data.get("appid"), data.get("secret"))
        now = self.now()
        current = self._tokens.get(self._current.get("stable", ""))
        force = bool(data.get("force_refresh"))
        if force and self._last_force_refresh is not None and now - self._last_force_refresh < 30:
            raise BadRequest(45011)
        if current is not None and not force and now < current.expires_at:
            return {"access_token": current.value, "expires_in": int(current.expires_at - now)}
        if not self._count_fetch("stable_force" if force else "stable"):
            raise BadRequest(45009)
        if force:
            self._last_force_refresh = now
        token = self._issue_token("stable")
        return {"access_token": token.value, "expires_in": TOKEN_LIFETIME}

    # sending

    def _custom_send(self, call: Call) -> dict[str, Any]:
        data = call.json()
        openid = data.get("touser")
        user = self._users.get(openid) if isinstance(openid, str) else None
        if user is None:
            raise BadRequest(40003)
        text = _custom_text(data)
        if not user.following:
            raise BadRequest(45015)
        now = self.now()
        open_windows = [w for w in user.windows.values() if now < w.closes_at]
        if not open_windows:
            raise BadRequest(45015)
        usable = sorted((w for w in open_windows if w.used < w.limit), key=lambda w: w.closes_at)
        if not usable:
            raise BadRequest(45047)
        # WeChat does not document how the two quotas combine. The fake lets either open window
        # allow a send and spends the one closing first, so a menu tap's 3-in-1-min quota does
        # not eat into the 5-in-48-h quota of an earlier message.
        usable[0].used += 1
        self._note(openid, Seen("custom", text, now, data["msgtype"]),
                   Sent("custom", openid, data, text, now))
        return dict(OK)

    def _template_send(self, call: Call) -> dict[str, Any]:
        data = call.json()
        template_id = data.get("template_id")
        if template_id not in self.templates:
            raise BadRequest(40037)
        openid = data.get("touser")
        user = self._users.get(openid) if isinstance(openid, str) else None
        if user is None:
            raise BadRequest(40003)
        if not user.following:
            raise BadRequest(43004)
        values = data.get("data")
        if not isinstance(values, dict):
            raise BadRequest(47003, "argument invalid! data is not an object")
        text = _render_template(self.templates[template_id], values)
        msgid = self._msg_id()
        now = self.now()
        self._note(openid, Seen("template", text, now, "template"),
                   Sent("template", openid, data, text, now, msgid))
        if self.app_url:
            # Best effort, after the answer, as WeChat reports the job later.
            call.after = BackgroundTask(self._report_template_job, user.openid, msgid)
        return OK | {"msgid": msgid}

    async def _report_template_job(self, openid: str, msgid: int) -> None:
        await self.push(self.template_job_finished(openid, msgid))

    def _bizsend(self, call: Call) -> dict[str, Any]:
        data = call.json()
        template_id = data.get("template_id")
        if template_id not in self.subscribe_templates:
            raise BadRequest(40037)
        openid = data.get("touser")
        user = self._users.get(openid) if isinstance(openid, str) else None
        if user is None:
            raise BadRequest(40003)
        if user.opt_ins.get(template_id, 0) <= 0:
            raise BadRequest(43101)
        values = data.get("data")
        if not isinstance(values, dict):
            raise BadRequest(47003, "argument invalid! data is not an object")
        user.opt_ins[template_id] -= 1
        text = _render_template(self.subscribe_templates[template_id], values)
        now = self.now()
        self._note(openid, Seen("subscribe", text, now, "subscribe"),
                   Sent("subscribe", openid, data, text, now))
        return dict(OK)

    # media

    def _media_get(self, call: Call) -> Response:
        """The bytes of a temporary media, as WeChat sends a file; an unknown or expired
        MediaId is 40007 in JSON where the bytes would be."""
        media_id = call.request.query_params.get("media_id", "")
        kept = self._media.get(media_id)
        if kept is None or self.now() >= kept.expires_at:
            raise BadRequest(40007)
        extension = kept.content_type.rsplit("/", 1)[-1]
        return Response(kept.data, media_type=kept.content_type, headers={
            "Content-Disposition": f'attachment; filename="{media_id}.{extension}"',
            "Cache-Control": "no-cache, must-revalidate"})

    # menus and QR codes

    def _menu_create(self, call: Call) -> dict[str, Any]:
        data = call.json()
        _validate_menu(data)
        self.menu = data
        self._note(None, sent=Sent("menu", None, data, json.dumps(data, ensure_ascii=False),
                                   self.now()))
        return dict(OK)

    def _menu_get(self, call: Call) -> dict[str, Any]:
        if self.menu is None:
            raise BadRequest(46003)
        return {"menu": self.menu}

    def _menu_delete(self, call: Call) -> dict[str, Any]:
        self.menu = None
        return dict(OK)

    def _qrcode_create(self, call: Call) -> dict[str, Any]:
        data = call.json()
        action = data.get("action_name")
        scene = (data.get("action_info") or {}).get("scene") or {}
        if action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE"):
            value = scene.get("scene_str")
            if not isinstance(value, str) or not 1 <= len(value) <= 64:
                raise BadRequest(47003, "argument invalid! scene_str is 1 to 64 characters")
        elif action in ("QR_SCENE", "QR_LIMIT_SCENE"):
            value = scene.get("scene_id")
            too_big = action == "QR_LIMIT_SCENE" and isinstance(value, int) and value > 100000
            if not isinstance(value, int) or value <= 0 or too_big:
                raise BadRequest(47003, "argument invalid! scene_id")
            value = str(value)
        else:
            raise BadRequest(47003, f"argument invalid! action_name {action!r}")
        permanent = action.startswith("QR_LIMIT")
        expire = None if permanent else int(data.get("expire_seconds") or 60)
        if expire is not None and not 1 <= expire <= 2592000:
            raise BadRequest(47003, "argument invalid! expire_seconds")
        ticket = "gQ" + crypto.random_text(94, string.ascii_letters + string.digits + "-_")
        url = "http://weixin.qq.com/q/" + crypto.random_text(22)
        now = self.now()
        qr = QrCode(ticket, value, url, permanent, None if expire is None else now + expire)
        self._qrcodes[ticket] = qr
        answer: dict[str, Any] = {"ticket": ticket, "url": url}
        if expire is not None:
            answer["expire_seconds"] = expire
        self._note(None, sent=Sent("qrcode", None, data, value, now))
        return answer

    def _ticket_for(self, scene: str) -> str:
        with self._lock:
            for qr in self._qrcodes.values():
                if qr.scene == scene:
                    return qr.ticket
        return "gQ" + crypto.random_text(94)

    async def _showqrcode(self, request: Request) -> Response:
        with self._lock:
            qr = self._qrcodes.get(request.query_params.get("ticket", ""))
        if qr is None or (qr.expires_at is not None and self.now() >= qr.expires_at):
            return Response(b"", status_code=404)
        out = io.BytesIO()
        segno.make(qr.url, error="m").save(out, kind="png", scale=4)
        return Response(out.getvalue(), media_type="image/png")


# --------------------------------------------------------------------------- API helpers


def _templates(given: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    if isinstance(given, Mapping):
        return dict(given)
    return {template_id: "" for template_id in given}


def _render_template(content: str, values: Mapping[str, Any]) -> str:
    """The template text with `{{name.DATA}}` filled in, or, without a known text, the values
    one per line."""
    def value(name: str) -> str:
        item = values.get(name)
        return str(item.get("value", "")) if isinstance(item, dict) else ""

    if content:
        return re.sub(r"\{\{\s*(\w+)\.DATA\s*\}\}", lambda m: value(m.group(1)), content)
    return "\n".join(value(name) for name in values)


def _custom_text(data: Mapping[str, Any]) -> str:
    msgtype = data.get("msgtype")
    body = data.get(msgtype) if isinstance(msgtype, str) else None
    if not isinstance(body, dict):
        raise BadRequest(40008)
    if msgtype == "text":
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise BadRequest(44004)
        return content
    if msgtype in ("image", "voice", "mpvideo", "video"):
        return f"[{msgtype}] {body.get('media_id', '')}"
    if msgtype == "news":
        return "\n".join(str(a.get("title", "")) for a in body.get("articles", []))
    if msgtype in ("mpnews", "mpnewsarticle", "music", "msgmenu", "wxcard", "miniprogrampage"):
        return f"[{msgtype}]"
    raise BadRequest(40008)


BUTTON_TYPES = frozenset({"click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                          "pic_photo_or_album", "pic_weixin", "location_select", "media_id",
                          "view_limited", "article_id", "article_view_limited", "miniprogram"})
KEYED_TYPES = frozenset({"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                         "pic_photo_or_album", "pic_weixin", "location_select"})


def _validate_menu(data: Mapping[str, Any]) -> None:
    """A loose check of the custom-menu shape: 1-3 buttons, 1-5 sub-buttons, name and key sizes."""
    buttons = data.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise BadRequest(40016)
    for button in buttons:
        _validate_button(button, max_name=16)
        subs = button.get("sub_button")
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                raise BadRequest(40023)
            for sub in subs:
                _validate_button(sub, max_name=60)
                if sub.get("sub_button"):
                    raise BadRequest(40023)
                _validate_action(sub)
        else:
            _validate_action(button)


def _validate_button(button: Any, *, max_name: int) -> None:
    if not isinstance(button, dict):
        raise BadRequest(40016)
    name = button.get("name")
    if not isinstance(name, str) or not 1 <= len(name.encode("utf-8")) <= max_name:
        raise BadRequest(40018)


def _validate_action(button: Mapping[str, Any]) -> None:
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        raise BadRequest(40017)
    if kind in KEYED_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not 1 <= len(key.encode("utf-8")) <= 128:
            raise BadRequest(40019)
    if kind == "view" and not button.get("url"):
        raise BadRequest(40017, "invalid button type: a view button needs a url")


def _menu_keys(menu: Mapping[str, Any]) -> set[str]:
    keys: set[str] = set()
    for button in menu.get("button", []):
        for b in [button, *button.get("sub_button", [])]:
            if b.get("type") in KEYED_TYPES:
                keys.add(b["key"])
    return keys


def _parse(xml: bytes) -> ET.Element:
    # WeChat accepts no DOCTYPE; refusing it also keeps entity expansion out of the fake.
    if b"<!DOCTYPE" in xml.upper():
        raise _ReplyError("the answer carries a DOCTYPE")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise _ReplyError(f"the answer is not XML: {exc}") from exc
    if root.tag != "xml":
        raise _ReplyError(f"the answer's root is <{root.tag}>, not <xml>")
    return root


# --------------------------------------------------------------------------- sync access


class _Blocking:
    """`fake.blocking.says(openid, "...")`: the coroutine methods, run to completion from
    synchronous code (in a worker thread, so it works whether or not a loop is running)."""

    def __init__(self, fake: FakeWeChat) -> None:
        self._fake = fake

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._fake, name)
        if not inspect.iscoroutinefunction(method):
            return method

        def run(*args: Any, **kwargs: Any) -> Any:
            with ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(asyncio.run, method(*args, **kwargs)).result()

        return run


# --------------------------------------------------------------------------- control over HTTP


def _push_summary(result: PushResult) -> dict[str, Any]:
    return {"openid": result.openid, "outcome": result.outcome, "reason": result.reason,
            "msg_id": result.msg_id, "text": result.text,
            "attempts": [{"status": a.status, "error": a.error} for a in result.attempts]}


def _control_routes(fake: FakeWeChat) -> list[Route]:
    """`/_control/...`: the control methods over HTTP, for a driver in another process."""

    async def data(request: Request) -> dict[str, Any]:
        body = await request.body()
        return json.loads(body) if body else {}

    def pushing(action: Callable[[dict[str, Any]], Awaitable[PushResult]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = await action(await data(request))
            except (ValueError, KeyError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(_push_summary(result))
        return endpoint

    def plain(action: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                answer = action(await data(request) | dict(request.query_params))
            except (ValueError, KeyError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(answer)
        return endpoint

    def clock(d: dict[str, Any]) -> dict[str, Any]:
        if "set" in d:
            fake.set_time(dt.datetime.fromtimestamp(float(d["set"]), dt.UTC))
        if "advance" in d:
            fake.advance(float(d["advance"]))
        return {"now": fake.now()}

    def inject(d: dict[str, Any]) -> dict[str, Any]:
        errcode = d.get("errcode")
        fake.inject(int(errcode) if errcode is not None else None,
                    delay=float(d.get("delay", 0)), path=d.get("path"), fault=d.get("fault"))
        return {"ok": True}

    def sent(d: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"kind": s.kind, "openid": s.openid, "payload": s.payload, "text": s.text,
                 "at": s.at, "msgid": s.msgid} for s in fake.sent(d.get("kind"), d.get("openid"))]

    async def seen(request: Request) -> Response:
        return JSONResponse([s.__dict__ for s in fake.seen(request.path_params["openid"])])

    def follow(d: dict[str, Any]) -> Awaitable[PushResult]:
        return fake.follow(d.get("openid"), scene=d.get("scene"))

    def location(d: dict[str, Any]) -> Awaitable[PushResult]:
        return fake.shares_location(d["openid"], d["latitude"], d["longitude"],
                                    scale=int(d.get("scale", 15)), label=d.get("label", ""))

    def users(d: dict[str, Any]) -> dict[str, Any]:
        return {"openid": fake.add_user(d.get("openid"), following=d.get("following", True))}

    def subscription(d: dict[str, Any]) -> dict[str, Any]:
        fake.grant_subscription(d["openid"], d["template_id"], int(d.get("times", 1)))
        return {"ok": True}

    def rotate_key(d: dict[str, Any]) -> dict[str, Any]:
        return {"encoding_aes_key": fake.rotate_key(d.get("encoding_aes_key"))}

    post = ["POST"]
    return [
        Route("/_control/users", plain(users), methods=post),
        Route("/_control/follow", pushing(follow), methods=post),
        Route("/_control/unfollow", pushing(lambda d: fake.unfollow(d["openid"])), methods=post),
        Route("/_control/scan", pushing(lambda d: fake.scans(d["openid"], d["ticket"])),
              methods=post),
        Route("/_control/says", pushing(lambda d: fake.says(d["openid"], d["text"])), methods=post),
        Route("/_control/taps", pushing(lambda d: fake.taps(d["openid"], d["key"])), methods=post),
        Route("/_control/location", pushing(location), methods=post),
        Route("/_control/subscription", plain(subscription), methods=post),
        Route("/_control/sent", plain(sent), methods=["GET"]),
        Route("/_control/seen/{openid}", seen, methods=["GET"]),
        Route("/_control/inject", plain(inject), methods=post),
        Route("/_control/clock", plain(clock), methods=post),
        Route("/_control/rotate-key", plain(rotate_key), methods=post),
    ]
