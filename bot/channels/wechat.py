"""The WeChat Official Account (公众号) channel: callbacks in, customer-service messages out.

Inbound (`bot/web/wechat.py` drives it):
- `verify_signature` / `CallbackCrypto.decrypt`: sha1 signatures compared in constant time;
  AES with the current EncodingAESKey, then the previous one (key rotation).
- `parse_xml`: a flat `<xml>` with no DOCTYPE or entity declaration (XXE, billion laughs).
- `translate`: one push → what to do: an `Incoming` for the pipeline, a channel text, or nothing.
- `keep_media`: a photo's or voice message's bytes downloaded (`media/get`) and stored while the
  push is handled, since a MediaId expires after a few days.
- `render` / `reply_xml`: replies as one text (buttons become numbered options the resident
  answers with a digit) inside CDATA with `]]>` split, so echoed text cannot break the XML.

Outbound:
- `WeChatClient`: wechatpy's client pointed at `WECHAT_API_BASE`, wechatpy's unbounded
  auto-retry off; on 40001/40014/42001 the shared token is refreshed once and the call retried
  once. The token lives in a `TokenStore` (Redis with a refresh lock when REDIS_URL is set).
- `WeChatSender`: an outbox row → customer-service text (a notice's kept photos become one
  link to a page showing them, `bot/web/photos.py`); past the 48 h window or its quota
  (45015/45047) → a template message (`WECHAT_TEMPLATE_NOTICE`); without one, or when that fails
  too → held until the resident next writes (`storage.outbox.release_recipient`).
- `MENU`, `create_menu`, `create_scene_qr`, `scene_qr_url`: the custom menu and the buildings'
  permanent scene QR codes (`scene_str` = "b_<building code>").
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlparse

import anyio
import redis
import requests
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col
from wechatpy.client import WeChatClient as _WeChatpyClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import WeChatClientException

from bot.channels import keep
from bot.channels.base import Attachment, Incoming, Outgoing, Reply, SendResult
from bot.channels.keep import MediaUnavailable
from handlers.replies import DEFAULT, say
from storage import tables as t
from storage.log_context import who
from storage.state import StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "wechat"
SCENE_PREFIX = "b_"
DEFAULT_API_BASE = "https://api.weixin.qq.com"
SHOWQRCODE = "https://mp.weixin.qq.com/cgi-bin/showqrcode"
# Real pushes are a few KB (compat mode roughly triples them); anything bigger is not WeChat.
MAX_PUSH_BYTES = 64 * 1024
# WeChat drops passive text replies over about 2048 bytes (PROTOCOLS.md §2.1); longer answers
# go out as customer-service messages instead.
MAX_PASSIVE_BYTES = 2000
DEDUPE_TTL = 600
OPTIONS_TTL = 7 * 24 * 3600
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
QUOTA_ERRORS = frozenset({45015, 45047})
CASE_NUMBER = re.compile(r"\b[A-Z]{2,4}-\d{8}-\d{4}\b")
CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"

# Custom-menu CLICK keys. The three kinds only prompt; the two lookups are pipeline commands.
KEY_SERVICE = "GD_SERVICE"
KEY_COMPLAINT = "GD_COMPLAINT"
KEY_PROPOSAL = "GD_PROPOSAL"
KEY_MY_CASES = "GD_MY_CASES"
KEY_MY_GRID = "GD_MY_GRID"
MENU: dict[str, Any] = {"button": [
    {"name": "找社区", "sub_button": [
        {"type": "click", "name": "办事", "key": KEY_SERVICE},
        {"type": "click", "name": "投诉", "key": KEY_COMPLAINT},
        {"type": "click", "name": "建议", "key": KEY_PROPOSAL},
    ]},
    {"type": "click", "name": "我的工单", "key": KEY_MY_CASES},
    {"type": "click", "name": "我的网格员", "key": KEY_MY_GRID},
]}
MENU_COMMANDS = {KEY_MY_CASES: "/status", KEY_MY_GRID: "/grid"}
MENU_PROMPTS = {KEY_SERVICE: "wechat.menu_service", KEY_COMPLAINT: "wechat.menu_complaint",
                KEY_PROPOSAL: "wechat.menu_proposal"}


class Rejected(Exception):
    """A push that must not be processed; `status` is the HTTP answer (403, 400, 413)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------- signatures and AES


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def verify_signature(token: str, signature: str, *parts: str) -> bool:
    """sha1(sorted(token, timestamp, nonce[, Encrypt])) == signature, in constant time."""
    if not signature or not all(isinstance(p, str) for p in parts):
        return False
    expected = sha1_signature(token, *parts)
    return hmac.compare_digest(expected.encode(), signature.lower().encode())


class CallbackCrypto:
    """AES for one account, with the previous EncodingAESKey tried when the current one fails."""

    def __init__(self, token: str, appid: str, key: str, previous: str | None = None) -> None:
        self.token = token
        self.appid = appid
        self.keys = [k for k in (key, previous) if k]
        self._cryptos = [WeChatCrypto(token, k, appid) for k in self.keys]

    def decrypt(self, encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> tuple[str, int]:
        """(plaintext XML, index of the key that worked). Rejected(403) on a bad msg_signature,
        Rejected(400) when no key yields a plaintext for this appid."""
        if not verify_signature(self.token, msg_signature, timestamp, nonce, encrypted):
            raise Rejected(403, "msg_signature does not match")
        for index, crypto in enumerate(self._cryptos):
            try:
                # The signature is already checked; wechatpy checks it again, harmlessly.
                plain = crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce)
            except Exception as exc:  # noqa: BLE001 - wechatpy raises struct.error, ValueError, … on garbage
                log.info("wechat: decryption with key %d failed: %s", index, type(exc).__name__)
                continue
            return plain, index
        raise Rejected(400, "the message does not decrypt with the current or previous key")

    def encrypt(self, reply: str, nonce: str, timestamp: str, key_index: int = 0) -> str:
        return self._cryptos[key_index].encrypt_message(reply, nonce, timestamp)


# --------------------------------------------------------------------------- freshness and replays

# WeChat's nonces are short decimal numbers; anything longer is not WeChat.
MAX_NONCE_CHARS = 64
# How often one process deletes expired replay memory rows (database mode).
PRUNE_EVERY_SECONDS = 60.0


def check_fresh(timestamp: str, nonce: str, now: dt.datetime, window: int) -> None:
    """Rejected(403) unless `timestamp` is whole seconds within `window` of `now` and `nonce`
    looks like one: a push logged, captured or signed long ago cannot be played again."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Rejected(403, "the timestamp is not whole seconds")
    if not nonce or len(nonce) > MAX_NONCE_CHARS:
        raise Rejected(403, "the nonce is missing or too long")
    if abs(int(timestamp) - now.timestamp()) > window:
        raise Rejected(403, "the timestamp is outside the freshness window")


class PushNonces:
    """The replay memory: each (timestamp, nonce) pair is claimed by the first push that carries
    it, for as long as that timestamp can still pass `check_fresh`.

    The memory is shared by every process: Redis (through the StateStore) when REDIS_URL is set,
    else the `UsedNonce` table, whose unique key answers the race between processes.

    The claim records which message the pair came with. The same pair with the same message is
    not an attack: it is WeChat resending a push whose answer it did not get (or the very same
    request again), and the message dedupe answers it "success" without doing anything twice.
    The same pair with any other message is a replay and is refused.
    """

    def __init__(self, *, state: StateStore, engine: Engine, shared_state: bool, window: int,
                 channel: str = CHANNEL) -> None:
        # Each channel (the Official Account, WeCom) has its own memory: a pair one platform used
        # says nothing about the other's.
        self.channel = channel
        self.state = state
        self.engine = engine
        self.shared_state = shared_state
        self.window = window
        self._pruned_at = -math.inf
        self._prune_lock = threading.Lock()

    def claim(self, timestamp: str, nonce: str, message_key: str, now: dt.datetime) -> bool:
        """True for the first push with this pair, or a resend of its message; False for a replay."""
        owner = hashlib.sha256(message_key.encode("utf-8")).hexdigest()
        value = f"{timestamp}:{nonce}"
        # Until the pair's timestamp leaves the window (plus a minute for clocks that differ).
        expires_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC) + dt.timedelta(seconds=self.window + 60)
        if self.shared_state:
            ttl = max(int((expires_at - now).total_seconds()), 1)
            key = f"{self.channel}:nonce:{value}"
            if self.state.first_time(key, ttl):
                self.state.put(f"{key}:owner", {"owner": owner}, ttl=ttl)
                return True
            seen = self.state.get(f"{key}:owner")
            return seen is not None and seen.get("owner") == owner
        self._prune(now)
        try:
            with UnitOfWork(self.engine) as uow:
                uow.session.add(t.UsedNonce(channel=self.channel, value=value, owner=owner, expires_at=expires_at))
                uow.commit()
            return True
        except IntegrityError:
            pass
        with UnitOfWork(self.engine) as uow:
            first = uow.session.scalars(select(col(t.UsedNonce.owner)).where(
                col(t.UsedNonce.channel) == self.channel, col(t.UsedNonce.value) == value)).first()
        return first == owner

    def _prune(self, now: dt.datetime) -> None:
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
                return
            self._pruned_at = time.monotonic()
        with UnitOfWork(self.engine) as uow:
            uow.session.execute(delete(t.UsedNonce).where(col(t.UsedNonce.expires_at) < now))
            uow.commit()


# --------------------------------------------------------------------------- XML in and out


def parse_xml(body: bytes | str) -> dict[str, str]:
    """The children of a flat `<xml>` as text; Rejected(400) for anything else.

    DOCTYPE and ENTITY declarations are refused before parsing, so neither external entities
    (XXE) nor entity expansion (billion laughs) can happen; WeChat never sends them.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise Rejected(400, "the body is not UTF-8") from exc
    low = text.lower()
    if "<!doctype" in low or "<!entity" in low:
        raise Rejected(400, "DTDs and entities are not accepted")
    if "<?xml" in low and "encoding" in low.split("?>", 1)[0] and "utf-8" not in low.split("?>", 1)[0]:
        raise Rejected(400, "only UTF-8 XML is accepted")
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, ValueError) as exc:
        raise Rejected(400, f"not XML: {exc}") from exc
    if root.tag != "xml":
        raise Rejected(400, f"the root is <{root.tag}>, not <xml>")
    return {child.tag: (child.text or "").strip() for child in root}


def cdata(value: str) -> str:
    # "]]>" inside CDATA would end it early; split it across two sections so any text survives.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def reply_xml(to_user: str, from_user: str, text: str, create_time: int) -> str:
    """A passive text reply."""
    return (f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}"
            f"</FromUserName><CreateTime>{int(create_time)}</CreateTime><MsgType>{cdata('text')}"
            f"</MsgType><Content>{cdata(text)}</Content></xml>")


# --------------------------------------------------------------------------- push → intent


@dataclass(frozen=True)
class Translation:
    """What one push asks of us.

    incoming: hand it to the pipeline (with `lead`, a channel text put before its replies);
    text: answer with this channel text only; neither: answer "success".
    """

    incoming: Incoming | None = None
    lead_key: str | None = None
    text_key: str | None = None
    # The MediaId of a photo or voice message to download and keep before the pipeline runs
    # (`keep_media`); the attachment refers to it until then.
    media_id: str | None = None


def dedupe_key(fields: dict[str, str]) -> str:
    """MsgId for messages; FromUserName+CreateTime for events, which carry no MsgId."""
    msg_id = fields.get("MsgId") if fields.get("MsgType") != "event" else None
    if msg_id:
        return f"m{msg_id}"
    return f"e{fields.get('FromUserName', '')}:{fields.get('CreateTime', '')}"


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and abs(number) <= 180 else None


def translate_common(fields: dict[str, str], *, channel: str, address: str,
                     number_action: Callable[[str], str | None], translation: Callable[..., T]) -> T | None:
    """The pushes the Official Account and WeCom send alike, as `translation(incoming)` or
    `translation(text_key=...)` (each channel has its own Translation): a text, or the action
    of the numbered option it answers, and a location. None for any other kind of push."""
    kind = fields.get("MsgType", "")

    def incoming(**kwargs: Any) -> Incoming:
        return Incoming(channel=channel, address=address, **kwargs)

    if kind == "text":
        content = fields.get("Content", "")
        action = number_action(content)
        return translation(incoming(action=action) if action else incoming(text=content))
    if kind == "location":
        lat, lon = _float(fields.get("Location_X")), _float(fields.get("Location_Y"))
        if lat is None or lon is None:
            return translation(text_key="wechat.unsupported")
        return translation(incoming(attachments=(
            Attachment(kind="location", latitude=lat, longitude=lon, ref=fields.get("Label", "")),)))
    return None


def translate(fields: dict[str, str], *, number_action: Callable[[str], str | None] = lambda _: None
              ) -> Translation:
    """One push → a Translation. `number_action(text)` maps a numbered-option answer ("1") to
    the action it stands for, when the resident was last shown options."""
    openid = fields.get("FromUserName", "")
    common = translate_common(fields, channel=CHANNEL, address=openid, number_action=number_action,
                              translation=Translation)
    if common is not None:
        return common
    kind = fields.get("MsgType", "")

    def incoming(**kwargs: Any) -> Incoming:
        return Incoming(channel=CHANNEL, address=openid, **kwargs)

    if kind == "image":
        # PicUrl is only a fallback: it expires like the MediaId, and the API cannot fetch it.
        media_id = fields.get("MediaId", "")
        ref = media_id or fields.get("PicUrl") or ""
        return Translation(incoming(attachments=(Attachment(kind="photo", ref=ref),)),
                           media_id=media_id or None)
    if kind == "voice":
        recognised = fields.get("Recognition", "").strip()
        media_id = fields.get("MediaId", "")
        if not recognised and not media_id:
            return Translation(text_key="wechat.voice_not_understood")
        # Kept either way; without WeChat's text, the desk asks for a sentence to go with it.
        voice = (Attachment(kind="voice", ref=media_id),) if media_id else ()
        return Translation(incoming(text=recognised, attachments=voice), media_id=media_id or None)
    if kind != "event":
        return Translation(text_key="wechat.unsupported")

    event = fields.get("Event", "")
    key = fields.get("EventKey", "")
    if event == "subscribe":
        scene = key.removeprefix("qrscene_") if key.startswith("qrscene_") else ""
        if scene.startswith(SCENE_PREFIX) and len(scene) > len(SCENE_PREFIX):
            return Translation(incoming(action=f"bind:{scene.removeprefix(SCENE_PREFIX)}"),
                               lead_key="wechat.welcome")
        # /grid answers a returning resident with their grid sign and a newcomer with the
        # binding prompt.
        return Translation(incoming(text="/grid"), lead_key="wechat.welcome")
    if event == "SCAN":
        if key.startswith(SCENE_PREFIX) and len(key) > len(SCENE_PREFIX):
            return Translation(incoming(action=f"bind:{key.removeprefix(SCENE_PREFIX)}"))
        return Translation()
    if event == "CLICK":
        if key in MENU_COMMANDS:
            return Translation(incoming(text=MENU_COMMANDS[key]))
        if key in MENU_PROMPTS:
            return Translation(text_key=MENU_PROMPTS[key])
        return Translation(text_key="wechat.unsupported")
    # LOCATION is a passive position report, not a report about a place; unsubscribe, VIEW and
    # TEMPLATESENDJOBFINISH need no answer.
    return Translation()


# --------------------------------------------------------------------------- replies → text


def options_key(address: str, channel: str = CHANNEL) -> str:
    """Where the numbered options last shown to `address` are kept; WeCom uses them too, under
    its own `channel` ("wechat:options:<openid>", "wecom:options:<userid>"). Stored state: the
    key must not change between versions."""
    return f"{channel}:options:{address}"


def number_action(state: StateStore, address: str, text: str, *, channel: str = CHANNEL) -> str | None:
    """The action behind a numbered option ("1", "１", "①") the person was last shown."""
    word = text.strip()
    if word in CIRCLED:
        index = CIRCLED.index(word) + 1
    elif word.isdecimal() and len(word) <= 2:  # isdigit() would take ² or ⑴, which int() refuses
        index = int(word)
    else:
        return None
    remembered = state.get(options_key(address, channel))
    actions = remembered.get("actions", []) if remembered else []
    return str(actions[index - 1]) if 1 <= index <= len(actions) else None


def render(lang: str, texts: Sequence[str], buttons: Sequence[Sequence[Any]]) -> tuple[str, list[str]]:
    """One text for WeChat, which has no buttons: each button becomes a numbered line, and the
    actions are returned in order so that the resident's digit can be mapped back."""
    labels: list[tuple[str, str]] = []
    for row in buttons:
        for button in row:
            if isinstance(button, dict):
                labels.append((str(button.get("label", "")), str(button.get("action", ""))))
            else:
                labels.append((button.label, button.action))
    body = "\n\n".join(t_.strip() for t_ in texts if t_ and t_.strip())
    if not labels:
        return body, []
    lines = [f"{CIRCLED[i] if i < len(CIRCLED) else i + 1} {label}" for i, (label, _) in enumerate(labels)]
    hint = say(lang, "wechat.options_hint")
    return f"{body}\n\n" + "\n".join(lines) + f"\n{hint}", [a for _, a in labels]


def remember_options(state: StateStore, address: str, actions: list[str], *, channel: str = CHANNEL,
                     forget_old: bool = True) -> None:
    """Keep the actions behind the options just shown, for `number_action`. A text without
    options forgets the earlier ones when `forget_old` (the Official Account's replies; WeCom's
    notices leave them standing)."""
    if actions:
        state.put(options_key(address, channel), {"actions": actions}, ttl=OPTIONS_TTL)
    elif forget_old:
        state.pop(options_key(address, channel))


def render_replies(state: StateStore, lang: str, openid: str, replies: Sequence[Reply],
                   lead: str = "") -> str:
    texts = ([lead] if lead else []) + [r.text for r in replies]
    buttons = [row for r in replies for row in r.buttons]
    text, actions = render(lang, texts, buttons)
    remember_options(state, openid, actions)
    return text


def language_of(engine: Engine, openid: str) -> str:
    """The language we speak to this openid in (its identity's, else the default)."""
    with UnitOfWork(engine) as uow:
        ident = uow.session.scalars(
            select(t.Identity)
            .where(col(t.Identity.channel) == CHANNEL, col(t.Identity.address) == openid)
        ).first()
        if ident is None:
            return DEFAULT
        if ident.language:
            return ident.language
        resident = uow.session.get(t.Resident, ident.resident_id) if ident.resident_id else None
        return resident.language if resident and resident.language else DEFAULT


# --------------------------------------------------------------------------- access_token


class TokenStore(Protocol):
    def get(self, fetch: Callable[[], dict[str, Any]]) -> str: ...
    def refresh(self, stale: str | None, fetch: Callable[[], dict[str, Any]]) -> str: ...


class MemoryTokenStore:
    """One token per process (the embedded default: a single process)."""

    def __init__(self, now: Callable[[], float] = time.time, margin: float = 300) -> None:
        self._now = now
        self._margin = margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def get(self, fetch: Callable[[], dict[str, Any]]) -> str:
        with self._lock:
            if self._token and self._expires_at - self._now() > self._margin:
                return self._token
            return self._fetch(fetch)

    def refresh(self, stale: str | None, fetch: Callable[[], dict[str, Any]]) -> str:
        with self._lock:
            if self._token and self._token != stale and self._expires_at > self._now():
                return self._token  # another thread refreshed it already
            return self._fetch(fetch)

    def _fetch(self, fetch: Callable[[], dict[str, Any]]) -> str:
        result = fetch()
        self._token = str(result["access_token"])
        self._expires_at = self._now() + float(result.get("expires_in", 7200))
        return self._token


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisTokenStore:
    """The token shared by every process (中控): read from Redis; only the holder of the lock
    (SET NX PX) fetches a new one, since each fetch invalidates the previous token."""

    def __init__(self, url: str, appid: str, *, now: Callable[[], float] = time.time, margin: float = 300,
                 prefix: str = "griddesk", lock_seconds: float = 15, wait_seconds: float = 20) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._key = f"{prefix}:wechat:{appid}:access_token"
        self._lock_key = f"{self._key}:lock"
        self._now = now
        self._margin = margin
        self._lock_ms = int(lock_seconds * 1000)
        self._wait = wait_seconds

    def _read(self) -> tuple[str, float] | None:
        raw = self._redis.get(self._key)
        if not raw:
            return None
        data = json.loads(raw)
        return str(data["token"]), float(data["expires_at"])

    def get(self, fetch: Callable[[], dict[str, Any]]) -> str:
        current = self._read()
        if current and current[1] - self._now() > self._margin:
            return current[0]
        return self._refresh(lambda c: bool(c and c[1] - self._now() > self._margin), fetch)

    def refresh(self, stale: str | None, fetch: Callable[[], dict[str, Any]]) -> str:
        return self._refresh(lambda c: bool(c and c[0] != stale and c[1] > self._now()), fetch)

    def _refresh(self, good: Callable[[tuple[str, float] | None], bool],
                 fetch: Callable[[], dict[str, Any]]) -> str:
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self._wait
        while True:
            current = self._read()
            if good(current):
                assert current is not None
                return current[0]
            if self._redis.set(self._lock_key, owner, nx=True, px=self._lock_ms):
                try:
                    current = self._read()
                    if good(current):
                        assert current is not None
                        return current[0]
                    result = fetch()
                    token = str(result["access_token"])
                    expires_in = float(result.get("expires_in", 7200))
                    self._redis.set(self._key, json.dumps(
                        {"token": token, "expires_at": self._now() + expires_in}), ex=int(expires_in))
                    return token
                finally:
                    self._redis.eval(_RELEASE, 1, self._lock_key, owner)
            if time.monotonic() > deadline:
                raise TimeoutError("waited too long for another process to refresh the WeChat token")
            time.sleep(0.05)

    def close(self) -> None:
        self._redis.close()


# --------------------------------------------------------------------------- the API client


class BrokenAnswer(WeChatClientException):  # type: ignore[misc]
    """The API server answered 200 with something that is neither JSON nor media."""


def failure(exc: BaseException) -> str:
    """What went wrong with an API call, in a few words for the log and the outbox row."""
    if isinstance(exc, WeChatClientException) and exc.errcode is not None:
        return f"{exc.errcode}: {exc.errmsg}"
    if isinstance(exc, BrokenAnswer):
        return str(exc.errmsg)
    response = getattr(exc, "response", None)
    if isinstance(exc, WeChatClientException) and response is not None:
        kind = response.headers.get("Content-Type", "").split(";", 1)[0] or "no content type"
        return f"HTTP {response.status_code} ({kind})"
    if isinstance(exc, requests.Timeout):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {str(exc)[:200]}"



class SharedToken:
    """For wechatpy's clients (the Official Account's and WeCom's): the access token shared by
    every process through a TokenStore, one bounded retry on token errors, and answers that are
    not JSON refused.

    wechatpy keeps its own token per process and retries token errors recursively without
    limit; here a call that fails with 40001, 40014 or 42001 refreshes the shared token once
    (unless another process already did) and is retried once.
    """

    tokens: TokenStore
    timeout: float
    _http: requests.Session
    channel = "wechat"  # names the client in the log

    def fetch_access_token(self) -> dict[str, Any]:
        raise NotImplementedError

    def token_answer(self, answer: requests.Response) -> dict[str, Any]:
        """The JSON of a token endpoint's answer; anything but JSON with an `access_token`
        raises (wechatpy's own fetch sends no timeout and trusts whatever comes back)."""
        try:
            answer.raise_for_status()
        except requests.RequestException as exc:
            raise WeChatClientException(None, None, client=self, request=answer.request,
                                        response=answer) from exc
        result = self._handle_result(answer)
        if not isinstance(result, dict) or not isinstance(result.get("access_token"), str):
            raise BrokenAnswer(None, "the token answer has no access_token", client=self,
                               request=answer.request, response=answer)
        return result

    @property
    def access_token(self) -> str:
        return self.tokens.get(self.fetch_access_token)

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        params = kwargs.get("params")
        if isinstance(params, dict) and "access_token" in params:
            return super()._request(method, url_or_endpoint, **kwargs)  # type: ignore[misc]
        token = self.access_token
        first = copy.copy(kwargs)
        first["params"] = dict(params or {}, access_token=token)
        try:
            return super()._request(method, url_or_endpoint, **first)  # type: ignore[misc]
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS:
                raise
            log.info("%s: token rejected (%s), refreshing once", self.channel, exc.errcode)
            fresh = self.tokens.refresh(token, self.fetch_access_token)
            second = copy.copy(kwargs)
            second["params"] = dict(params or {}, access_token=fresh)
            return super()._request(method, url_or_endpoint, **second)  # type: ignore[misc]

    def _handle_result(self, res: Any, method: Any = None, url: Any = None, result_processor: Any = None,
                       **kwargs: Any) -> Any:
        """wechatpy hands back the raw response when it is not JSON; only media may be that.
        JSON that does not parse (cut off), an HTML error page or text is BrokenAnswer."""
        result = super()._handle_result(res, method, url, result_processor, **kwargs)  # type: ignore[misc]
        if isinstance(result, requests.Response):
            kind = result.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if not kind or kind.startswith("text/") or kind.endswith("json"):
                raise BrokenAnswer(None, f"HTTP {result.status_code} {kind or 'without a content type'} "
                                         f"that is not JSON ({len(result.content)} bytes)",
                                   client=self, request=result.request, response=result)
        return result


class WeChatClient(SharedToken, _WeChatpyClient):  # type: ignore[misc]
    """wechatpy's Official Account client with a configurable API base and the shared token."""

    def __init__(self, appid: str, secret: str, *, api_base: str | None = None,
                 tokens: TokenStore | None = None, timeout: float = 10.0) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self.API_BASE_URL = f"{self.api_base}/cgi-bin/"
        self.tokens = tokens or MemoryTokenStore()
        if urlparse(self.api_base).hostname in ("127.0.0.1", "localhost", "::1"):
            self._http.trust_env = False  # no proxy between us and a loopback server

    def fetch_access_token(self) -> dict[str, Any]:
        """A new token from `/cgi-bin/token`, waiting `timeout` at most."""
        return self.token_answer(self._http.get(
            f"{self.api_base}/cgi-bin/token", timeout=self.timeout,
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}))

    def showqrcode_url(self, ticket: str) -> str:
        base = SHOWQRCODE if self.api_base == DEFAULT_API_BASE else f"{self.api_base}/cgi-bin/showqrcode"
        return f"{base}?ticket={quote(ticket)}"


def build_client(settings: Any, *, now: Callable[[], float] = time.time) -> WeChatClient | None:
    """The client for the configured account, or None when WECHAT_APPID/SECRET are not set."""
    if not settings.wechat_appid or not settings.wechat_secret:
        return None
    tokens: TokenStore
    if settings.redis_url:
        tokens = RedisTokenStore(settings.redis_url, settings.wechat_appid, now=now)
    else:
        tokens = MemoryTokenStore(now=now)
    return WeChatClient(settings.wechat_appid, settings.wechat_secret, api_base=settings.wechat_api_base,
                        tokens=tokens)


# --------------------------------------------------------------------------- media


def download_media(client: WeChatClient, media_id: str) -> tuple[bytes, str]:
    """(bytes, content type) of a temporary media (GET /cgi-bin/media/get).

    WeChat answers an error as JSON with `errcode` where the bytes would be (wechatpy raises it
    as WeChatClientException; a token error is retried once by the client); anything else
    that is JSON or text is not media either. All of these are MediaUnavailable (40007 once a
    MediaId has expired).
    """
    try:
        answer = client.media.download(media_id)
    except WeChatClientException as exc:
        raise MediaUnavailable(f"wechat {exc.errcode}: {exc.errmsg}") from exc
    except requests.RequestException as exc:
        raise MediaUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(answer, requests.Response):
        raise MediaUnavailable(f"WeChat answered {str(answer)[:200]!r} instead of media")
    content_type = answer.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not content_type or content_type.startswith("text/") or content_type.endswith("json"):
        raise MediaUnavailable(f"WeChat answered {content_type or 'no content type'}, not media")
    return answer.content, content_type


def keep_media(client: WeChatClient | None, engine: Engine, incoming: Incoming, media_id: str,
               now: dt.datetime) -> Incoming:
    """The incoming message with its photo or voice message stored and its attachment referring
    to the kept copy (bot/channels/keep.py); on any failure it keeps the MediaId.

    WeChat keeps a MediaId only a few days (PROTOCOLS.md §2.2), so this runs while the message
    is handled.
    """
    if client is None:
        log.warning("wechat: no API client, so media %s is kept only as a reference", media_id)
        return incoming
    return keep.keep_media(engine, incoming, media_id,
                           lambda: download_media(client, media_id), now)


# --------------------------------------------------------------------------- sending


class WeChatSender:
    """An outbox row → a customer-service message; past the window, a template message; else
    held (not dropped, not retried in a loop) until the resident writes again."""

    channel = CHANNEL

    def __init__(self, client: WeChatClient, *, state: StateStore, engine: Engine | None = None,
                 template_id: str | None = None, template_fields: Sequence[str] = (
                     "first", "keyword1", "keyword2", "remark"),
                 hold_seconds: float = 7 * 24 * 3600, busy_seconds: float = 3600,
                 photo_link: Callable[[Sequence[int]], str] | None = None) -> None:
        self.client = client
        self.photo_link = photo_link
        self.state = state
        self.engine = engine
        self.template_id = template_id
        self.template_fields = list(template_fields)
        self.hold_seconds = hold_seconds
        self.busy_seconds = busy_seconds

    def _lang(self, openid: str) -> str:
        return language_of(self.engine, openid) if self.engine is not None else DEFAULT

    async def send(self, message: Outgoing) -> SendResult:
        return await anyio.to_thread.run_sync(self.send_sync, message)

    def send_sync(self, message: Outgoing) -> SendResult:
        lang = self._lang(message.address)
        body = message.text
        if message.media and self.photo_link is not None:
            # One link instead of a message per photo: each would spend the recipient's quota.
            body += "\n" + say(lang, "wechat.photos_link", count=len(message.media),
                                url=self.photo_link(message.media))
        text, actions = render(lang, [body], message.buttons)
        try:
            self.client.message.send_text(message.address, text)
        except WeChatClientException as exc:
            code = exc.errcode
            if code in QUOTA_ERRORS:
                return self._template(message, lang, why=f"{code}")
            if code == 40003:
                return SendResult(ok=False, unreachable=True, error="wechat 40003 invalid openid")
            if code == 45009:
                return SendResult(ok=False, retry_after=self.busy_seconds)
            return self._failed(message, failure(exc))
        except Exception as exc:  # noqa: BLE001 - whatever the server sent, the outbox retries
            return self._failed(message, failure(exc))
        remember_options(self.state, message.address, actions)
        return SendResult(ok=True)

    def _failed(self, message: Outgoing, reason: str) -> SendResult:
        """A send that may work later (the server erred, hung or answered nonsense): the outbox
        retries it with backoff and marks it dead after SEND_MAX_ATTEMPTS."""
        log.warning("wechat: notice %s not sent (%s); it will be retried", message.id, reason)
        return SendResult(ok=False, error=f"wechat {reason}")

    def template_data(self, lang: str, text: str) -> dict[str, dict[str, str]]:
        """The notice in a template's slots: heading (first line), case number, the rest, and a
        remark saying how to continue. Slot names come from WECHAT_TEMPLATE_FIELDS."""
        lines = [line for line in text.strip().splitlines() if line.strip()]
        first = lines[0] if lines else text
        found = CASE_NUMBER.search(text)
        values = [first, found.group(0) if found else "—", "\n".join(lines[1:]) or first,
                  say(lang, "wechat.template_remark")]
        return {name: {"value": value[:200]} for name, value in zip(self.template_fields, values, strict=False)}

    def _template(self, message: Outgoing, lang: str, why: str) -> SendResult:
        hold = SendResult(ok=False, retry_after=self.hold_seconds)
        if not self.template_id:
            log.info("wechat: notice %s held for %s (no window: %s, no template)", message.id,
                     who(message.address), why)
            return hold
        try:
            self.client.message.send_template(message.address, self.template_id,
                                              self.template_data(lang, message.text))
        except WeChatClientException as exc:
            if exc.errcode in (-1,) or exc.errcode is None:
                return self._failed(message, "template " + failure(exc))
            log.info("wechat: notice %s held for %s (template failed: %s)", message.id,
                     who(message.address), exc.errcode)
            return hold
        except Exception as exc:  # noqa: BLE001 - as for customer-service messages
            return self._failed(message, "template " + failure(exc))
        return SendResult(ok=True)


# --------------------------------------------------------------------------- menu and scene QR codes


def create_menu(client: WeChatClient, menu: dict[str, Any] | None = None) -> dict[str, Any]:
    return client.menu.create(menu or MENU)  # type: ignore[no-any-return]


def scene_of(building_code: str) -> str:
    return f"{SCENE_PREFIX}{building_code}"


def create_scene_qr(client: WeChatClient, building_code: str) -> dict[str, str]:
    """A permanent string-scene QR code for a building: {"ticket", "url", "image"} where `url` is
    the content to encode and `image` the PNG WeChat renders (showqrcode)."""
    scene = scene_of(building_code)
    if len(scene.encode()) > 64:
        raise ValueError(f"scene {scene!r} is over 64 bytes")
    answer = client.qrcode.create({"action_name": "QR_LIMIT_STR_SCENE",
                                   "action_info": {"scene": {"scene_str": scene}}})
    ticket = str(answer["ticket"])
    return {"ticket": ticket, "url": str(answer["url"]), "image": client.showqrcode_url(ticket)}


_QR_CACHE: dict[tuple[str, str], str] = {}
_QR_LOCK = threading.Lock()


def scene_qr_url(services_or_settings: Any, building_code: str) -> str:
    """The content of a building's WeChat scene QR code (for printed grid signs). Permanent
    codes do not change, so each is asked of WeChat once per process."""
    senders = getattr(services_or_settings, "senders", None)
    sender = senders.get(CHANNEL) if isinstance(senders, dict) else None
    client = sender.client if sender is not None else None
    if client is None:
        settings = getattr(services_or_settings, "settings", services_or_settings)
        client = build_client(settings)
    if client is None:
        raise RuntimeError("WeChat is not configured: set WECHAT_APPID and WECHAT_SECRET")
    with _QR_LOCK:
        cached = _QR_CACHE.get((client.appid, building_code))
    if cached:
        return cached
    url = create_scene_qr(client, building_code)["url"]
    with _QR_LOCK:
        _QR_CACHE[(client.appid, building_code)] = url
    return url
