"""The WeCom (企业微信) channel for staff: a self-built app's callback in, app messages out.

WeCom lets a self-built app message any member of its visible range at any time (no 48 h window
as on the Official Account), and carries interactive template cards, so grid workers get their
case cards here with the buttons 签收 / 答复 / 转办 / 办结 / 退单 (PROTOCOLS.md §3).

Inbound (`bot/web/wecom.py` drives it):
- `CallbackCrypto`: the URL check (an *encrypted* echostr, decrypted and returned as is) and the
  always-encrypted pushes; msg_signature is compared in constant time before wechatpy decrypts.
  Signatures, freshness, the replay memory and the XML parser are the Official Account's
  (bot/channels/wechat.py): the scheme is the same, only the receiver id is the CorpID.
- `translate`: one push → text, a location, a menu command, a card press, or nothing.

Outbound:
- `WeComClient`: wechatpy's enterprise client pointed at `WECOM_API_BASE`, its unbounded
  auto-retry off; 40001/40014/42001 refresh the shared token once and retry once. The token is
  shared through Redis under a lock (`TokenStore` of the OA channel, under its own key).
- `WeComSender`: an outbox row → a `button_interaction` template card when it has buttons
  (six at most; more become numbered options in a text), else a text. `invaliduser` in an
  `errcode 0` answer (or 81013) is a failure for that person: the notice is marked unreachable,
  and the outbox sender takes it on as for every channel (bot/unreachable.py: their next channel,
  or the case up its chain when none is left). WeCom drops silently what passes 30 a minute or
  1000 an hour per member, so the sender keeps those counts itself and, at a member's last slot
  with more notices waiting, merges them into one digest card; past the limit the member's
  notices wait for the window to pass.
- `update_card`: a pressed card redrawn with its one-time `response_code` (72 h) to show the
  case's new state, with only the buttons that still apply (`card_for_case`).

Signing in (the console's `/console/login/wecom`, bot/web/console/login.py):
- `authorize_url`: WeCom's OAuth (网页授权, `snsapi_base`) inside the WeCom app, its QR login
  (企业微信扫码登录) in any other browser; both come back to the redirect URI with `code` and
  `state`.
- `member_of_code`: `auth/getuserinfo` turns the code (single use, 5 minutes) into the member id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

import anyio
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col
from wechatpy.enterprise.client import WeChatClient as _WeChatpyWorkClient
from wechatpy.enterprise.crypto import WeChatCrypto as _WorkCrypto
from wechatpy.exceptions import WeChatClientException

from bot.channels import wechat as wc
from bot.channels.base import Incoming, Outgoing, SendResult
from handlers.cases import lifecycle
from handlers.notify import render_buttons
from handlers.replies import DEFAULT, say
from storage import outbox
from storage import tables as t
from storage.state import StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

CHANNEL = "wecom"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
ALL_INVALID = 81013
NOT_TRUSTED_IP = 60020
# Per member, WeCom silently drops what passes these (PROTOCOLS.md §3.1).
PER_MINUTE = 30
PER_HOUR = 1000
# A template card holds at most six buttons; a button key at most 1024 bytes.
MAX_CARD_BUTTONS = 6
MAX_KEY_BYTES = 1024
# WeCom advises ten characters; a case number (16) must stay whole.
MAX_LABEL = 20
# horizontal_content_list: at most six lines.
MAX_CARD_LINES = 6
# A card's response_code is good for one update within 72 h.
CARD_TTL = 72 * 3600
DEDUPE_TTL = 600
# The case steps a card's buttons carry: a press of one of these redraws the card.
CASE_STEPS = ("ack", "rep", "trf", "res", "ret")
KEY_VALUE = re.compile(r"^\s*([^：:]{1,8})[：:]\s*(.+)$")
# Signing in: OAuth inside the WeCom app, the QR login elsewhere (fixed hosts of WeCom's own).
OAUTH_AUTHORIZE = "https://open.weixin.qq.com/connect/oauth2/authorize"
SSO_LOGIN = "https://login.work.weixin.qq.com/wwlogin/sso/login"
INVALID_CODE = 40029


def who(userid: str) -> str:
    """A member id as logs show it (a short digest, like the OA's openids)."""
    return "w" + hashlib.sha256(userid.encode("utf-8")).hexdigest()[:10]


def normal_userid(userid: str) -> str:
    """WeCom returns member ids lowercased; compare them that way."""
    return userid.strip().lower()


# --------------------------------------------------------------------------- callback crypto


class CallbackCrypto:
    """The app's callback: msg_signature over (token, timestamp, nonce, echostr|Encrypt), AES with
    the CorpID as the receiver id."""

    def __init__(self, token: str, corp_id: str, key: str) -> None:
        self.token = token
        self.corp_id = corp_id
        self._crypto = _WorkCrypto(token, key, corp_id)

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The decrypted echostr to answer the URL check with; Rejected(403) on a bad
        signature, Rejected(400) when it does not decrypt for this CorpID."""
        if not echostr or not wc.verify_signature(self.token, msg_signature, timestamp, nonce, echostr):
            raise wc.Rejected(403, "msg_signature does not match")
        try:
            plain = self._crypto.check_signature(msg_signature, timestamp, nonce, echostr)
        except Exception as exc:  # wechatpy raises several kinds on garbage
            raise wc.Rejected(400, f"the echostr does not decrypt ({type(exc).__name__})") from exc
        return plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)

    def decrypt(self, encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
        if not wc.verify_signature(self.token, msg_signature, timestamp, nonce, encrypted):
            raise wc.Rejected(403, "msg_signature does not match")
        try:
            plain = self._crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
        except Exception as exc:  # struct.error, ValueError, InvalidCorpIdException …
            raise wc.Rejected(400, f"the message does not decrypt for this CorpID ({type(exc).__name__})") from exc
        return plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)

    def encrypt(self, reply: str, nonce: str, timestamp: str) -> str:
        return str(self._crypto.encrypt_message(reply, nonce, timestamp))


# --------------------------------------------------------------------------- push → intent


@dataclass(frozen=True)
class CardPress:
    """A button pressed on a template card (`template_card_event`)."""

    key: str
    task_id: str
    response_code: str


@dataclass(frozen=True)
class Translation:
    """What one push asks of us: hand `incoming` to the pipeline (a press also carries `press`),
    answer with the channel text `text_key`, or nothing at all."""

    incoming: Incoming | None = None
    press: CardPress | None = None
    text_key: str | None = None


def dedupe_key(fields: dict[str, str]) -> str:
    """MsgId for messages; for events (no MsgId) the member, CreateTime and what was pressed."""
    if fields.get("MsgType") != "event" and fields.get("MsgId"):
        return f"m{fields['MsgId']}"
    return "e" + ":".join(fields.get(k, "") for k in ("FromUserName", "CreateTime", "Event", "EventKey", "TaskId"))


def translate(fields: dict[str, str], *, number_action: Callable[[str], str | None] = lambda _: None
              ) -> Translation:
    userid = normal_userid(fields.get("FromUserName", ""))
    common = wc.translate_common(fields, channel=CHANNEL, address=userid, number_action=number_action,
                                 translation=Translation)
    if common is not None:
        return common

    def incoming(**kwargs: Any) -> Incoming:
        return Incoming(channel=CHANNEL, address=userid, **kwargs)

    if fields.get("MsgType", "") != "event":
        return Translation(text_key="wechat.unsupported")
    event = fields.get("Event", "")
    key = fields.get("EventKey", "")
    if event == "template_card_event":
        if not key or key.startswith("noop:"):
            return Translation()
        if key.startswith("/"):
            return Translation(incoming(text=key))  # a digest card's /mine
        press = CardPress(key=key, task_id=fields.get("TaskId", ""), response_code=fields.get("ResponseCode", ""))
        return Translation(incoming(action=key), press=press)
    if event == "click" and key.startswith("/"):
        # An app menu item whose key is a command ("/mine", "/figures").
        return Translation(incoming(text=key))
    # enter_agent, view, subscribe, location reports and the like need no answer.
    return Translation()


# --------------------------------------------------------------------------- numbered options


def number_action(state: StateStore, userid: str, text: str) -> str | None:
    """The Official Account's numbered options, under WeCom's own key ("wecom:options:<userid>")."""
    return wc.number_action(state, userid, text, channel=CHANNEL)


def remember_options(state: StateStore, userid: str, actions: list[str]) -> None:
    # A notice without numbered options leaves those shown before standing.
    wc.remember_options(state, userid, actions, channel=CHANNEL, forget_old=False)


# --------------------------------------------------------------------------- cards


def _buttons(rows: Sequence[Sequence[Any]]) -> list[tuple[str, str]]:
    out = []
    for row in rows:
        for button in row:
            if isinstance(button, dict):
                out.append((str(button.get("label", "")), str(button.get("action", ""))))
            else:
                out.append((button.label, button.action))
    return out


def fits_card(buttons: Sequence[tuple[str, str]]) -> bool:
    return 0 < len(buttons) <= MAX_CARD_BUTTONS and all(
        len(action.encode("utf-8")) <= MAX_KEY_BYTES for _, action in buttons)


def new_task_id() -> str:
    # Unique per app, at most 128 characters of [A-Za-z0-9_@-].
    return "gd_" + secrets.token_hex(12)


def card(text: str, buttons: Sequence[tuple[str, str]], task_id: str, *, done: str = "") -> dict[str, Any]:
    """A `button_interaction` template card for a notice: its first line is the title, lines of
    the form "名称：值" become the card's key/value lines (six at most), the rest its text.
    `done` (with no buttons) is the one disabled button that ends a card."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    title = lines[0].strip() if lines else "—"
    pairs: list[dict[str, str]] = []
    rest: list[str] = []
    for line in lines[1:]:
        found = KEY_VALUE.match(line)
        if found and len(pairs) < MAX_CARD_LINES:
            pairs.append({"keyname": found.group(1).strip(), "value": found.group(2).strip()})
        else:
            rest.append(line.strip())
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": title[:36]},
        "task_id": task_id,
    }
    if rest:
        body["sub_title_text"] = "\n".join(rest)[:1000]
    if pairs:
        body["horizontal_content_list"] = pairs
    if buttons:
        body["button_list"] = [{"text": label[:MAX_LABEL], "style": 1, "key": action} for label, action in buttons]
    else:
        body["button_list"] = [{"text": (done or "—")[:MAX_LABEL], "style": 2, "key": f"noop:{task_id}"}]
    return body


def live_buttons(case: t.Case, person: t.Person) -> list[list[tuple[str, str]]]:
    """The case steps a card may still offer this person: none once the case is done or held by
    someone else; no 签收 once it has been acknowledged."""
    if case.state in (t.CaseState.RESOLVED, t.CaseState.CLOSED) or case.holder_id != person.id:
        return []
    rows = lifecycle.staff_buttons(case)
    if case.state not in lifecycle.WAITING_FOR_ACK:
        rows = [[(k, a) for k, a in row if not a.startswith("ack:")] for row in rows]
    return [row for row in rows if row]


def card_for_case(engine: Engine, case_ref: str, userid: str, task_id: str
                  ) -> tuple[dict[str, Any] | None, str] | None:
    """(the card showing the case as it stands now, or None when no button is left on it; the
    name of its state) for this member, or None when the member or the case is unknown to them."""
    with UnitOfWork(engine) as uow:
        session = uow.session
        ident = identity_of(session, userid)
        person = session.get(t.Person, ident.person_id) if ident and ident.person_id else None
        if person is None:
            return None
        try:
            case = lifecycle.for_staff(session, case_ref, person)
        except Exception:  # noqa: BLE001 - NotFound: not theirs (any more), nothing to redraw
            return None
        lang = (ident.language if ident else None) or person.language or DEFAULT
        text = lifecycle.case_card(session, case, lang, with_contact=case.holder_id == person.id)
        state = say(lang, f"state.{case.state}")
        buttons = _buttons(render_buttons(lang, live_buttons(case, person)))
        return (card(text, buttons, task_id) if buttons else None), state


def identity_of(session: Any, userid: str) -> t.Identity | None:
    return session.scalars(select(t.Identity).where(
        col(t.Identity.channel) == CHANNEL, col(t.Identity.address) == userid)).first()


def bind_members(engine: Engine, now: dt.datetime, userids: Sequence[str] | None = None) -> int:
    """Give every active person with a WeCom member id (or only those among `userids`) their
    WeCom chat identity; returns how many were made. Only a configured channel calls this, so
    notices never wait for a channel that is not there."""
    made = 0
    with UnitOfWork(engine) as uow:
        stmt = select(t.Person).where(col(t.Person.active).is_(True), col(t.Person.wecom_userid).is_not(None))
        if userids is not None:
            stmt = stmt.where(col(t.Person.wecom_userid).in_([normal_userid(u) for u in userids]))
        for person in uow.session.scalars(stmt):
            userid = normal_userid(person.wecom_userid or "")
            ident = identity_of(uow.session, userid)
            if ident is None:
                uow.session.add(t.Identity(channel=CHANNEL, address=userid, person_id=person.id, created_at=now))
                made += 1
            elif ident.person_id != person.id:
                ident.person_id, ident.resident_id = person.id, None
        uow.commit()
    return made


# --------------------------------------------------------------------------- access_token


class RedisTokenStore(wc.RedisTokenStore):
    """The OA's shared token store, under the app's own key (one token per CorpID and secret)."""

    def __init__(self, url: str, corp_id: str, agent_id: int | str, **kwargs: Any) -> None:
        super().__init__(url, corp_id, **kwargs)
        self._key = f"griddesk:wecom:{corp_id}:{agent_id}:access_token"
        self._lock_key = f"{self._key}:lock"


# --------------------------------------------------------------------------- the API client


class WeComClient(wc.SharedToken, _WeChatpyWorkClient):  # type: ignore[misc]
    """wechatpy's enterprise client with a configurable API base and the shared token of
    `wc.SharedToken` (one bounded retry on token errors, answers that are not JSON refused)."""

    channel = "wecom"

    def __init__(self, corp_id: str, secret: str, *, api_base: str | None = None,
                 tokens: wc.TokenStore | None = None, timeout: float = 10.0) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        base = (api_base or DEFAULT_API_BASE).rstrip("/") + "/"
        self.API_BASE_URL = base
        self.tokens = tokens or wc.MemoryTokenStore()
        if urlparse(base).hostname in ("127.0.0.1", "localhost", "::1"):
            self._http.trust_env = False

    def fetch_access_token(self) -> dict[str, Any]:
        return self.token_answer(self._http.get(
            f"{self.API_BASE_URL}gettoken", timeout=self.timeout,
            params={"corpid": self.corp_id, "corpsecret": self.secret}))

    def post_json(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST raw UTF-8 JSON (never \\uXXXX escapes, which WeCom refuses with 40033)."""
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        return self._request("post", endpoint, data=body,  # type: ignore[no-any-return]
                             headers={"Content-Type": "application/json; charset=utf-8"})

    def get_json(self, endpoint: str, **params: Any) -> dict[str, Any]:
        return self._request("get", endpoint, params=params)  # type: ignore[no-any-return]


def build_client(settings: Any, *, now: Callable[[], float] = time.time) -> WeComClient | None:
    """The client for the configured app, or None when WECOM_CORP_ID/SECRET/AGENT_ID are not set."""
    if not settings.wecom_corp_id or not settings.wecom_secret or settings.wecom_agent_id is None:
        return None
    tokens: wc.TokenStore
    if settings.redis_url:
        tokens = RedisTokenStore(settings.redis_url, settings.wecom_corp_id, settings.wecom_agent_id, now=now)
    else:
        tokens = wc.MemoryTokenStore(now=now)
    return WeComClient(settings.wecom_corp_id, settings.wecom_secret, api_base=settings.wecom_api_base,
                       tokens=tokens)


def invalid_recipients(answer: dict[str, Any]) -> list[str]:
    """Who of a send's recipients WeCom did not reach, though it answered errcode 0."""
    found: list[str] = []
    for name in ("invaliduser", "unlicenseduser"):
        value = answer.get(name)
        if isinstance(value, str) and value:
            found += [normal_userid(v) for v in value.split("|") if v]
        elif isinstance(value, list):
            found += [normal_userid(str(v)) for v in value]
    return found


# --------------------------------------------------------------------------- signing in


def in_wecom_app(user_agent: str) -> bool:
    """WeCom's built-in browser says `wxwork` in its user agent."""
    return "wxwork" in user_agent.lower()


def authorize_url(corp_id: str, agent_id: int | str, redirect_uri: str, state: str, *, in_app: bool) -> str:
    """Where a browser goes to be told who it is: inside the WeCom app its silent OAuth
    (`snsapi_base`, the member id only), anywhere else the QR login for this app."""
    if in_app:
        query = urlencode({"appid": corp_id, "redirect_uri": redirect_uri, "response_type": "code",
                           "scope": "snsapi_base", "agentid": agent_id, "state": state})
        return f"{OAUTH_AUTHORIZE}?{query}#wechat_redirect"
    query = urlencode({"login_type": "CorpApp", "appid": corp_id, "agentid": agent_id,
                       "redirect_uri": redirect_uri, "state": state})
    return f"{SSO_LOGIN}?{query}"


class NotAMember(Exception):
    """The code stands for someone outside the organisation (WeCom answered an openid)."""


def member_of_code(client: WeComClient, code: str) -> str:
    """The member id (lowercased) a sign-in code stands for. NotAMember for a non-member;
    WeChatClientException from WeCom, 40029 for a code that is unknown, used or expired."""
    answer = client.get_json("auth/getuserinfo", code=code)
    # `userid` today; the older answer spelled it `UserId`.
    userid = answer.get("userid") or answer.get("UserId")
    if isinstance(userid, str) and userid.strip():
        return normal_userid(userid)
    raise NotAMember("the code is not a member's" if answer.get("openid") else "the answer names no member")


# --------------------------------------------------------------------------- per-member limits


class MemberLimits:
    """WeCom's per-member limits kept on our side (it drops the excess without a word): sends in
    the current minute and hour per member, shared by every process through the StateStore."""

    def __init__(self, state: StateStore, *, per_minute: int = PER_MINUTE, per_hour: int = PER_HOUR,
                 now: Callable[[], float] = time.time) -> None:
        self.state = state
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._now = now

    def _read(self, userid: str) -> dict[str, Any]:
        now = self._now()
        data = self.state.get(f"wecom:limits:{userid}") or {}
        minute, hour = data.get("minute", [now, 0]), data.get("hour", [now, 0])
        if now - minute[0] >= 60:
            minute = [now, 0]
        if now - hour[0] >= 3600:
            hour = [now, 0]
        return {"minute": minute, "hour": hour}

    def left(self, userid: str) -> tuple[int, float]:
        """(sends left now, seconds until one is free again when none is)."""
        data = self._read(userid)
        now = self._now()
        left_minute = self.per_minute - data["minute"][1]
        left_hour = self.per_hour - data["hour"][1]
        if left_hour <= 0:
            return 0, max(data["hour"][0] + 3600 - now, 1.0)
        if left_minute <= 0:
            return 0, max(data["minute"][0] + 60 - now, 1.0)
        return min(left_minute, left_hour), 0.0

    def spend(self, userid: str) -> None:
        data = self._read(userid)
        data["minute"][1] += 1
        data["hour"][1] += 1
        self.state.put(f"wecom:limits:{userid}", data, ttl=3600)

    def lock(self, userid: str) -> Any:
        return self.state.lock(f"wecom:limits:{userid}")


# --------------------------------------------------------------------------- sending


class WeComSender:
    """An outbox row → an app message to one member: a template card when it carries buttons,
    else a text."""

    channel = CHANNEL

    def __init__(self, client: WeComClient, *, agent_id: int, state: StateStore, engine: Engine | None = None,
                 limits: MemberLimits | None = None, busy_seconds: float = 60.0) -> None:
        self.client = client
        self.agent_id = int(agent_id)
        self.state = state
        self.engine = engine
        self.limits = limits or MemberLimits(state)
        self.busy_seconds = busy_seconds

    async def send(self, message: Outgoing) -> SendResult:
        return await anyio.to_thread.run_sync(self.send_sync, message)

    def send_sync(self, message: Outgoing) -> SendResult:
        userid = message.address
        with self.limits.lock(userid):
            left, wait = self.limits.left(userid)
            if left <= 0:
                # WeCom would drop it without a word: the member's notices wait instead.
                log.info("wecom: %s is at the per-member limit; notices wait %.0f s", who(userid), wait)
                return SendResult(ok=False, retry_after=wait)
            waiting = self._waiting(message) if left == 1 else []
            body = self._digest(message, waiting) if waiting else self.payload(message)
            self.limits.spend(userid)
        result = self.post(body, message)
        if result.ok and waiting:
            self._merged(waiting)
        return result

    def payload(self, message: Outgoing) -> dict[str, Any]:
        buttons = _buttons(message.buttons)
        if fits_card(buttons):
            return {"touser": message.address, "msgtype": "template_card", "agentid": self.agent_id,
                    "template_card": card(message.text, buttons, new_task_id())}
        text, actions = wc.render(self._lang(message.address), [message.text], message.buttons)
        remember_options(self.state, message.address, actions)
        return {"touser": message.address, "msgtype": "text", "agentid": self.agent_id, "text": {"content": text}}

    def post(self, body: dict[str, Any], message: Outgoing) -> SendResult:
        try:
            answer = self.client.post_json("message/send", body)
        except WeChatClientException as exc:
            if exc.errcode == ALL_INVALID:
                return self._unreachable(message, f"{ALL_INVALID} user & party & tag all invalid")
            if exc.errcode == -1:
                return SendResult(ok=False, retry_after=self.busy_seconds)
            if exc.errcode == NOT_TRUSTED_IP:
                log.warning("wecom: the server's IP is not among the app's trusted IPs (60020); "
                            "see README, WeCom")
            return self._failed(message, wc.failure(exc))
        except Exception as exc:  # noqa: BLE001 - whatever the server sent, the outbox retries
            return self._failed(message, wc.failure(exc))
        if normal_userid(message.address) in invalid_recipients(answer):
            return self._unreachable(message, "invaliduser: not in the app's visible range")
        return SendResult(ok=True)

    def _unreachable(self, message: Outgoing, why: str) -> SendResult:
        """Refused for this member: the outbox sender queues the notice on their next channel
        (bot/unreachable.py)."""
        log.warning("wecom: notice %s did not reach %s (%s)", message.id, who(message.address), why)
        return SendResult(ok=False, unreachable=True, error=f"wecom {why}")

    def _failed(self, message: Outgoing, reason: str) -> SendResult:
        log.warning("wecom: notice %s not sent (%s); it will be retried", message.id, reason)
        return SendResult(ok=False, error=f"wecom {reason}")

    def _lang(self, userid: str) -> str:
        if self.engine is None:
            return DEFAULT
        with UnitOfWork(self.engine) as uow:
            ident = identity_of(uow.session, userid)
            person = uow.session.get(t.Person, ident.person_id) if ident and ident.person_id else None
            return (ident.language if ident else None) or (person.language if person else None) or DEFAULT

    # A burst: at the member's last slot of the window, the notices waiting behind this one go
    # out merged into one digest card rather than be held a minute (or an hour).

    def _waiting(self, message: Outgoing) -> list[t.Outbox]:
        if self.engine is None:
            return []
        with UnitOfWork(self.engine) as uow:
            return list(uow.session.scalars(
                select(t.Outbox).where(
                    col(t.Outbox.channel) == CHANNEL, col(t.Outbox.address) == message.address,
                    col(t.Outbox.state) == t.OutboxState.PENDING, col(t.Outbox.id) != message.id)
                .order_by(col(t.Outbox.id)).limit(50)))

    def _digest(self, message: Outgoing, waiting: Sequence[t.Outbox]) -> dict[str, Any]:
        texts = [message.text] + [row.text for row in waiting]
        heads = [next((line for line in text.splitlines() if line.strip()), "—") for text in texts]
        lines = "\n".join(f"{i}. {head.strip()}" for i, head in enumerate(heads, 1))
        digest = card(f"{heads[0]} (+{len(heads) - 1})\n{lines}", [], new_task_id(), done="/mine")
        digest["button_list"] = [{"text": "/mine", "style": 1, "key": "/mine"}]
        return {"touser": message.address, "msgtype": "template_card", "agentid": self.agent_id,
                "template_card": digest}

    def _merged(self, rows: Sequence[t.Outbox]) -> None:
        assert self.engine is not None
        with UnitOfWork(self.engine) as uow:
            now = dt.datetime.now(dt.UTC)
            for stale in rows:
                row = uow.session.get(t.Outbox, stale.id)
                if row is not None and row.state == t.OutboxState.PENDING:
                    outbox.mark_sent(uow.session, row, now)
            uow.commit()

    # Redrawing a pressed card.

    def update_card(self, userid: str, response_code: str, template_card: dict[str, Any] | None,
                    replace_name: str = "") -> bool:
        """Redraw a card with its one-time response_code; False when WeCom refused."""
        body: dict[str, Any] = {"userids": [userid], "agentid": self.agent_id, "response_code": response_code}
        if template_card is not None and not replace_name:
            body["template_card"] = template_card
        else:
            body["button"] = {"replace_name": (replace_name or "—")[:MAX_LABEL]}
        try:
            self.client.post_json("message/update_template_card", body)
        except Exception as exc:  # noqa: BLE001 - the card stays as it was; the chat text says what happened
            log.warning("wecom: the card of %s was not redrawn (%s)", who(userid), wc.failure(exc))
            return False
        return True
