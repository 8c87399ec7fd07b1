"""A loopback WeCom (企业微信) self-built app: it calls the app's callback as WeCom does and serves
the API the app calls, as PROTOCOLS.md §3.3 describes.

Push side: the URL check with an encrypted, percent-encoded echostr (passed only by the exact
plaintext within 1 s); always-encrypted pushes (text, location, image, click, enter_agent and
`template_card_event`) with ToUserName = CorpID and the AgentID; a deadline per attempt, three
attempts, only HTTP 200 counts as received; every answer recorded (empty, or encrypted XML).

API side (HTTP 200 with `errcode`/`errmsg`, as WeCom answers):
- `GET gettoken`: one token per secret (a new fetch supersedes the old one, which keeps working
  5 minutes), 40013 for another CorpID, 40001 for a wrong secret, 42001 once a token expires
  (the fake's clock), and a trusted-IP mode answering 60020 to any other address.
- `POST message/send`: the token and the `agentid` checked; `touser` split on `|`; members
  outside the app's visible range are listed in `invaliduser` under errcode 0, all of them
  invalid is 81013; past 30 a minute or 1000 an hour to one member the message is silently
  dropped (errcode 0, recorded as dropped); `\\uXXXX` escapes in the body are 40033; a card
  gets a `response_code`.
- `POST message/update_template_card`: a response_code works once, within 72 h.
- `GET department/list` and `GET user/list`: the members the app can see (for `griddesk wecom sync`).
- `GET auth/getuserinfo`: a sign-in code (issued by `sign_in`, as WeCom's OAuth or QR login
  would) → `userid` for a member of the organisation, `openid` for anyone else; a code works
  once, within 5 minutes, else 40029.

What a member sees is their transcript (`seen`): texts and cards, each card as it stands after
its updates, so a test can press only the buttons a member would still find on it.

Tokens, injected faults (`inject`, errcodes or a broken server's answers) and the endpoint
around each handler are the Official Account fake's too (tests/fakes/weixin_api.py).

Signatures and AES come from `tests.fakes.wechat_crypto`, never from wechatpy.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import wechat_crypto as crypto
from tests.fakes.wechat import post_push, render_xml
from tests.fakes.weixin_api import TOKEN_LIFETIME, Call, FakeWeixinApi, rid

PER_MINUTE = 30
PER_HOUR = 1000
CARD_CODE_LIFETIME = 72 * 3600
LOGIN_CODE_LIFETIME = 300
URL_CHECK_SECONDS = 1.0
ESCAPED = re.compile(rb"\\u[0-9a-fA-F]{4}")

ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40029: "invalid code",
    40033: "不合法的请求字符：不能包含\\uxxxx格式的字符",
    40056: "invalid agentid",
    40058: "invalid parameter",
    41001: "access_token missing",
    42001: "access_token expired",
    44002: "empty post data",
    47001: "data format error",
    60020: "not allow to access from your ip",
    81013: "user & party & tag all invalid",
}


def _error(code: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": code, "errmsg": f"{errmsg or ERRMSG.get(code, 'error')}, hint: [{rid()}]"}


@dataclass
class Member:
    userid: str
    name: str
    mobile: str = ""
    department: int = 1
    visible: bool = True


@dataclass
class Seen:
    """One thing in a member's chat with the app. A card's `card` is its current face."""

    kind: str  # "text" | "card"
    text: str
    at: int
    card: dict[str, Any] | None = None
    task_id: str = ""

    def buttons(self) -> list[tuple[str, str]]:
        """(text, key) of the buttons that can still be pressed."""
        if self.card is None:
            return []
        if self.card.get("_replaced"):
            return []
        return [(b["text"], b["key"]) for b in self.card.get("button_list", [])]


@dataclass(frozen=True)
class Attempt:
    number: int
    query: Mapping[str, str]
    status: int | None
    reply: bytes
    error: str | None


@dataclass(frozen=True)
class PushResult:
    """received: some attempt got HTTP 200 (its body in `reply`); else every attempt failed."""

    fields: Mapping[str, Any]
    attempts: tuple[Attempt, ...]
    received: bool
    reply: bytes


@dataclass(frozen=True)
class Verification:
    passed: bool
    echostr: str
    status: int | None
    body: bytes
    elapsed: float
    error: str | None = None


@dataclass
class _CardCode:
    task_id: str
    userid: str
    issued_at: float
    used: bool = False


@dataclass
class _LoginCode:
    userid: str
    issued_at: float
    used: bool = False


class FakeWeCom(FakeWeixinApi):
    """WeCom, both sides, for one self-built app. Serve `api_app` on 127.0.0.1."""

    wait_timeout = 10.0

    def __init__(self, *, corp_id: str | None = None, agent_id: int = 1000002, secret: str | None = None,
                 token: str = "griddesk-wecom-token", encoding_aes_key: str | None = None,
                 app_url: str | None = None, attempt_timeout: float = 5.0, attempts: int = 3,
                 clock: Any = None, trusted_ips: Iterable[str] | None = None,
                 members: Iterable[Member] = (), all_invalid_is_error: bool = True) -> None:
        super().__init__(clock)
        self.corp_id = corp_id or "ww" + secrets.token_hex(8)
        self.agent_id = agent_id
        self.secret = secret or secrets.token_hex(21)
        self.token = token
        self.encoding_aes_key = encoding_aes_key or crypto.new_encoding_aes_key()
        crypto.aes_key(self.encoding_aes_key)
        self.app_url = app_url
        self.attempt_timeout = attempt_timeout
        self.attempts = attempts
        self.trusted_ips = set(trusted_ips) if trusted_ips is not None else None
        # Every recipient invalid: 81013 (PROTOCOLS.md §3.1), or, as many apps observe for a
        # single recipient, errcode 0 with `invaliduser`.
        self.all_invalid_is_error = all_invalid_is_error
        self._members: dict[str, Member] = {m.userid: m for m in members}
        self._seen: dict[str, list[Seen]] = {}
        self._cards: dict[str, Seen] = {}
        self._codes: dict[str, _CardCode] = {}
        self._login_codes: dict[str, _LoginCode] = {}
        self._sends: dict[str, list[int]] = {}
        self._dropped: list[dict[str, Any]] = []
        self._pushes: list[PushResult] = []
        self._create_time = 0
        self._msg_id = 7_000_000_000_000_000_000 + secrets.randbelow(10**15)
        self.api_app = self._build_api_app()

    # ----------------------------------------------------------------------- members

    def add_member(self, userid: str, name: str = "", *, mobile: str = "", department: int = 1,
                   visible: bool = True) -> str:
        with self._lock:
            self._members[userid] = Member(userid, name or userid, mobile, department, visible)
        return userid

    def set_visible(self, userid: str, visible: bool) -> None:
        """Put a member inside or outside the app's visible range (可见范围)."""
        with self._lock:
            self._members[userid].visible = visible

    # ----------------------------------------------------------------------- transcripts

    def seen(self, userid: str) -> list[Seen]:
        with self._lock:
            return list(self._seen.get(userid, []))

    def cards(self, userid: str) -> list[Seen]:
        return [s for s in self.seen(userid) if s.kind == "card"]

    @property
    def dropped(self) -> list[dict[str, Any]]:
        """Messages WeCom accepted and silently dropped (over a member's limit)."""
        with self._lock:
            return list(self._dropped)

    @property
    def pushes(self) -> list[PushResult]:
        with self._lock:
            return list(self._pushes)

    # ----------------------------------------------------------------------- pushes

    def _base(self, userid: str, msg_type: str) -> dict[str, Any]:
        with self._lock:
            self._create_time = max(self.now(), self._create_time + 1)
            return {"ToUserName": self.corp_id, "FromUserName": userid, "CreateTime": self._create_time,
                    "MsgType": msg_type}

    def _next_msg_id(self) -> int:
        with self._lock:
            self._msg_id += 1 + secrets.randbelow(1000)
            return self._msg_id

    def text(self, userid: str, content: str) -> dict[str, Any]:
        return self._base(userid, "text") | {"Content": content, "MsgId": self._next_msg_id(),
                                             "AgentID": self.agent_id}

    def location(self, userid: str, latitude: float, longitude: float, label: str = "") -> dict[str, Any]:
        return self._base(userid, "location") | {"Location_X": latitude, "Location_Y": longitude, "Scale": 15,
                                                 "Label": label, "MsgId": self._next_msg_id(),
                                                 "AgentID": self.agent_id}

    def image(self, userid: str) -> dict[str, Any]:
        return self._base(userid, "image") | {"PicUrl": "https://wework.qpic.cn/x", "MediaId": crypto.random_text(40),
                                              "MsgId": self._next_msg_id(), "AgentID": self.agent_id}

    def event(self, userid: str, event: str, key: str = "", **extra: Any) -> dict[str, Any]:
        return self._base(userid, "event") | {"AgentID": self.agent_id, "Event": event, "EventKey": key} | extra

    async def says(self, userid: str, content: str) -> PushResult:
        return await self.push(self.text(userid, content))

    async def presses(self, userid: str, card: Seen, button: str) -> PushResult:
        """The member taps the button labelled `button` on `card` as it stands now."""
        with self._lock:
            card = self._cards.get(card.task_id) or card  # the card as it stands now
            keys = dict(card.buttons())
            if button not in keys:
                raise ValueError(f"the card has no button {button!r} to press: {sorted(keys)}")
            code = secrets.token_hex(16)
            self._codes[code] = _CardCode(card.task_id, userid, self.now())
        return await self.push(self.event(userid, "template_card_event", keys[button], TaskId=card.task_id,
                                          CardType="button_interaction", ResponseCode=code))

    def _query(self, encrypted: str, timestamp: str | None = None) -> dict[str, str]:
        ts, nonce = timestamp or str(self.now()), crypto.nonce()
        return {"msg_signature": crypto.signature(self.token, ts, nonce, encrypted), "timestamp": ts,
                "nonce": nonce}

    async def push(self, fields: Mapping[str, Any], *, timestamp: str | None = None) -> PushResult:
        """One push with WeCom's retries: the same body, a fresh signature each attempt; only a
        200 counts as received."""
        if not self.app_url:
            raise RuntimeError("set app_url before pushing")
        encrypted = crypto.encrypt(render_xml(fields), self.encoding_aes_key, self.corp_id)
        body = render_xml({"ToUserName": self.corp_id, "AgentID": self.agent_id, "Encrypt": encrypted})
        attempts: list[Attempt] = []
        received, reply = False, b""
        async with httpx.AsyncClient(trust_env=False, timeout=self.attempt_timeout) as client:
            for number in range(1, self.attempts + 1):
                query = self._query(encrypted, timestamp)
                status, content, error = await post_push(client, self.app_url, query, body, self.attempt_timeout)
                attempts.append(Attempt(number, query, status, content, error))
                if status == 200:
                    received, reply = True, content
                    break
        if received and reply:
            self._check_reply(reply)
        result = PushResult(dict(fields), tuple(attempts), received, reply)
        with self._lock:
            self._pushes.append(result)
        return result

    def _check_reply(self, reply: bytes) -> None:
        """A non-empty answer must be an encrypted reply for this CorpID."""
        root = ET.fromstring(reply)
        encrypt, ts, nonce = root.findtext("Encrypt"), root.findtext("TimeStamp"), root.findtext("Nonce")
        if not encrypt or not ts or not nonce:
            raise AssertionError("a non-empty answer is not an encrypted reply")
        if root.findtext("MsgSignature") != crypto.signature(self.token, ts, nonce, encrypt):
            raise AssertionError("the reply's MsgSignature does not match")
        _, receiver = crypto.decrypt(encrypt, self.encoding_aes_key)
        if receiver != self.corp_id:
            raise AssertionError(f"the reply is encrypted for {receiver!r}")

    async def verify_url(self, *, echostr_plain: str | None = None, sign: bool = True) -> Verification:
        """The URL check: GET with an encrypted, percent-encoded echostr; passed only when the body
        is exactly the plaintext and came within 1 s."""
        if not self.app_url:
            raise RuntimeError("set app_url before verifying")
        plain = echostr_plain or str(secrets.randbelow(10**19))
        echostr = crypto.encrypt(plain.encode(), self.encoding_aes_key, self.corp_id)
        query = self._query(echostr)
        if not sign:
            query["msg_signature"] = secrets.token_hex(20)
        # Percent-encode every value ourselves (the echostr's "+" must not become a space).
        url = self.app_url + "?" + "&".join(
            f"{k}={quote(v, safe='')}" for k, v in (query | {"echostr": echostr}).items())
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=self.attempt_timeout) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            return Verification(False, plain, None, b"", time.monotonic() - started, str(exc))
        elapsed = time.monotonic() - started
        passed = response.status_code == 200 and response.content == plain.encode() and elapsed <= URL_CHECK_SECONDS
        return Verification(passed, plain, response.status_code, response.content, elapsed)

    # ----------------------------------------------------------------------- API side

    def _build_api_app(self) -> Starlette:
        api = self._api
        routes = [
            Route("/cgi-bin/gettoken", api(self._gettoken, auth=False), methods=["GET"]),
            Route("/cgi-bin/message/send", api(self._send), methods=["POST"]),
            Route("/cgi-bin/message/update_template_card", api(self._update_card), methods=["POST"]),
            Route("/cgi-bin/department/list", api(self._departments), methods=["GET"]),
            Route("/cgi-bin/user/list", api(self._users), methods=["GET"]),
            Route("/cgi-bin/auth/getuserinfo", api(self._getuserinfo), methods=["GET"]),
            Route("/_control/says", self._control_says, methods=["POST"]),
            Route("/_control/sent", self._control_sent, methods=["GET"]),
            Route("/_control/visible", self._control_visible, methods=["POST"]),
            Route("/_control/inject", self._control_inject, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _error(self, code: int, errmsg: str | None = None) -> dict[str, Any]:
        return _error(code, errmsg)

    def _refuse(self, call: Call) -> dict[str, Any] | None:
        """In trusted-IP mode, a call from any other address is 60020."""
        if self.trusted_ips is not None and call.client_ip not in self.trusted_ips:
            return _error(60020, f"not allow to access from your ip, from ip: {call.client_ip}")
        return None

    def _gettoken(self, call: Call) -> dict[str, Any]:
        query = call.request.query_params
        if query.get("corpid") != self.corp_id:
            return _error(40013)
        if query.get("corpsecret") != self.secret:
            return _error(40001)
        token = self._issue_token()
        return {"errcode": 0, "errmsg": "ok", "access_token": token.value, "expires_in": TOKEN_LIFETIME}

    def _json(self, body: bytes) -> dict[str, Any]:
        if not body:
            return _error(44002)
        if ESCAPED.search(body):
            return _error(40033)
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error(47001)
        return data if isinstance(data, dict) else _error(47001)

    def _send(self, call: Call) -> dict[str, Any]:
        data = self._json(call.body)
        if "errcode" in data and data.get("errcode"):
            return data
        if str(data.get("agentid")) != str(self.agent_id):
            return _error(40056)
        kind = data.get("msgtype")
        if kind not in ("text", "template_card", "markdown", "textcard"):
            return _error(40058, "invalid parameter: msgtype")
        wanted = [u for u in str(data.get("touser", "")).split("|") if u]
        valid = [u for u in wanted if u in self._members and self._members[u].visible]
        invalid = [u for u in wanted if u not in valid]
        if not valid and self.all_invalid_is_error:
            return _error(81013)
        now = self.now()
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": secrets.token_urlsafe(24)}
        if invalid:
            answer["invaliduser"] = "|".join(invalid)
        if not valid:
            return answer
        if kind == "template_card":
            task_id = str(data["template_card"].get("task_id", ""))
            if not task_id or task_id in self._cards:
                return _error(40058, "invalid parameter: task_id is missing or used")
            code = secrets.token_hex(16)
            self._codes[code] = _CardCode(task_id, valid[0], now)
            answer["response_code"] = code
        for userid in valid:
            times = [at for at in self._sends.get(userid, []) if now - at < 3600]
            self._sends[userid] = times + [now]
            if sum(1 for at in times if now - at < 60) >= PER_MINUTE or len(times) >= PER_HOUR:
                self._dropped.append({"userid": userid, "payload": data})
                continue
            self._deliver(userid, kind, data, now)
        return answer

    def _deliver(self, userid: str, kind: str, data: dict[str, Any], now: int) -> None:
        if kind == "template_card":
            face = copy.deepcopy(data["template_card"])
            seen = Seen("card", _card_text(face), now, face, str(face.get("task_id")))
            self._cards[seen.task_id] = seen
        elif kind == "text":
            seen = Seen("text", str(data.get("text", {}).get("content", "")), now)
        else:
            seen = Seen("text", json.dumps(data.get(kind), ensure_ascii=False), now)
        self._seen.setdefault(userid, []).append(seen)

    def _update_card(self, call: Call) -> dict[str, Any]:
        data = self._json(call.body)
        if "errcode" in data and data.get("errcode"):
            return data
        if str(data.get("agentid")) != str(self.agent_id):
            return _error(40056)
        code = self._codes.get(str(data.get("response_code", "")))
        if code is None or code.used or self.now() - code.issued_at > CARD_CODE_LIFETIME:
            return _error(40058, "invalid parameter: response_code used, expired or unknown")
        code.used = True
        seen = self._cards[code.task_id]
        if "template_card" in data:
            face = copy.deepcopy(data["template_card"])
            face["task_id"] = code.task_id
            seen.card, seen.text = face, _card_text(face)
        else:
            name = str((data.get("button") or {}).get("replace_name", ""))
            assert seen.card is not None
            seen.card = dict(seen.card, _replaced=name)
        return {"errcode": 0, "errmsg": "ok", "invaliduser": []}

    def _departments(self, call: Call) -> dict[str, Any]:
        ids = sorted({m.department for m in self._members.values() if m.visible})
        return {"errcode": 0, "errmsg": "ok",
                "department": [{"id": i, "name": f"部门{i}", "parentid": 0 if i == 1 else 1} for i in ids]}

    def _users(self, call: Call) -> dict[str, Any]:
        department = int(call.request.query_params.get("department_id", "1"))
        people = [m for m in self._members.values() if m.visible and m.department == department]
        return {"errcode": 0, "errmsg": "ok", "userlist": [
            {"userid": m.userid, "name": m.name, "mobile": m.mobile, "department": [m.department]} for m in people]}

    def _getuserinfo(self, call: Call) -> dict[str, Any]:
        found = self._login_codes.get(call.request.query_params.get("code", ""))
        if found is None or found.used or self.now() - found.issued_at > LOGIN_CODE_LIFETIME:
            return _error(40029)
        found.used = True
        if found.userid in self._members:
            return {"errcode": 0, "errmsg": "ok", "userid": found.userid, "user_ticket": secrets.token_urlsafe(32),
                    "expires_in": 1800}
        # Someone outside the organisation (a WeChat user): an openid, no member id.
        return {"errcode": 0, "errmsg": "ok", "openid": "o" + secrets.token_urlsafe(20),
                "external_userid": "wm" + secrets.token_hex(12)}

    # ----------------------------------------------------------------------- signing in

    def issue_code(self, userid: str) -> str:
        """A sign-in code for `userid`, as WeCom puts it on the redirect after its OAuth or QR
        login (a `userid` that is no member stands for an outsider)."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._login_codes[code] = _LoginCode(userid, self.now())
        return code

    def sign_in(self, authorize_url: str, userid: str) -> str:
        """What WeCom does with a browser sent to its OAuth or QR login (`authorize_url`) once
        `userid` is known: the URL it redirects back to, the redirect URI with `code` and
        `state`. Raises ValueError for a URL WeCom would refuse (another CorpID or app)."""
        parts = urlsplit(authorize_url)
        query = dict(parse_qsl(parts.query))
        if parts.netloc == "open.weixin.qq.com":
            if parts.path != "/connect/oauth2/authorize" or parts.fragment != "wechat_redirect":
                raise ValueError(f"not WeCom's OAuth: {authorize_url}")
            if query.get("response_type") != "code" or query.get("scope") != "snsapi_base":
                raise ValueError("OAuth needs response_type=code and scope=snsapi_base")
        elif parts.netloc == "login.work.weixin.qq.com":
            if parts.path != "/wwlogin/sso/login" or query.get("login_type") != "CorpApp":
                raise ValueError(f"not WeCom's QR login for an app: {authorize_url}")
        else:
            raise ValueError(f"not a WeCom sign-in URL: {authorize_url}")
        if query.get("appid") != self.corp_id or query.get("agentid") != str(self.agent_id):
            raise ValueError("the sign-in URL names another CorpID or app")
        state = query.get("state", "")
        if not re.fullmatch(r"[A-Za-z0-9]{1,128}", state):  # WeCom takes a-zA-Z0-9, 128 bytes at most
            raise ValueError(f"WeCom refuses the state {state!r}")
        redirect = query["redirect_uri"]
        joiner = "&" if urlsplit(redirect).query else "?"
        return redirect + joiner + urlencode({"code": self.issue_code(userid), "state": state})

    # ----------------------------------------------------------------------- control over HTTP

    async def _control_says(self, request: Request) -> Response:
        data = json.loads(await request.body())
        result = await self.says(data["userid"], data["text"])
        return JSONResponse({"received": result.received})

    async def _control_sent(self, request: Request) -> Response:
        userid = request.query_params.get("userid", "")
        return JSONResponse([{"kind": s.kind, "text": s.text, "task_id": s.task_id, "buttons": s.buttons()}
                             for s in self.seen(userid)])

    async def _control_visible(self, request: Request) -> Response:
        data = json.loads(await request.body())
        self.set_visible(data["userid"], bool(data["visible"]))
        return JSONResponse({"ok": True})

    async def _control_inject(self, request: Request) -> Response:
        data = json.loads(await request.body())
        self.inject(data.get("errcode"), delay=float(data.get("delay", 0)), path=data.get("path"))
        return JSONResponse({"ok": True})


def _card_text(face: Mapping[str, Any]) -> str:
    """A card as a member reads it: title, key/value lines, text, button labels."""
    lines = [str((face.get("main_title") or {}).get("title", ""))]
    lines += [f"{p.get('keyname', '')}：{p.get('value', '')}" for p in face.get("horizontal_content_list", [])]
    if face.get("sub_title_text"):
        lines.append(str(face["sub_title_text"]))
    return "\n".join(line for line in lines if line)
