"""A loopback Telegram Bot API server: the real aiogram ``Bot`` talks to it unchanged.

It does what PROTOCOLS.md §1.3 asks of a conformant fake: the Bot API methods griddesk calls,
with Telegram's exact error strings, rate limits, fault injection, an update store served by
``getUpdates`` or pushed to a webhook with Telegram's retry and per-chat ordering rules, and a
control API to play the users' side. The control API exists twice: as methods on the object
(for tests in the same process) and as HTTP under ``/_control/<method>`` (for other processes).

Usage::

    with FakeTelegram(tokens=["123456:TEST"]) as fake:
        fake.user(1001, "王芳")
        fake.start_bot(1001)
        bot = fake.bot()                    # aiogram Bot pointed at fake.url
        await bot.send_message(1001, "您好")
        await bot.session.close()
        assert fake.sent(1001)[0].text == "您好"

The server runs in its own thread with its own event loop (tests/fakes/serving.py). Webhook
deliveries and long polls run on that loop; state is shared with the test thread under one lock.
Times in Telegram objects (``date``, expiry, rate windows, callback age) come from ``clock``,
which tests may replace with a :class:`ManualClock`; webhook retry delays are real seconds
multiplied by ``time_scale``.

Besides the Bot API's own errors, ``fail_next(fault=...)`` makes the server broken in ways that
are not protocol-shaped, over real HTTP (see ``FAULTS``): an HTML error page from a proxy, a
method the server does not have answered 404 in HTML, JSON cut short, a connection closed
half-way through the body, a long poll that answers at once. ``requests(method)`` counts what
the server received, whatever it answered.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import itertools
import json
import logging
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from html.parser import HTMLParser
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.serving import ServedApp

DEFAULT_TOKEN = "123456:TEST"
CONTROL_PREFIX = "/_control/"

# Limits from PROTOCOLS.md §1.1 (Limits).
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA_BYTES = 64
# getFile hands out files of at most 20 MB; a larger one is "file is too big" (Bot API, getFile).
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
# An unanswered callback query expires after about 15 s (PROTOCOLS.md §1.2).
CALLBACK_ANSWER_WINDOW = 15.0
# Updates are kept 24 h (PROTOCOLS.md §1.1, getUpdates).
UPDATE_TTL = 24 * 3600.0
# Retry-After from a webhook is clamped to an hour (tdlib WebhookActor, PROTOCOLS.md §1.1).
MAX_RETRY_AFTER = 3600.0
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
TOKEN = re.compile(r"(\d+):(\S+)")
# Update types delivered when allowed_updates is empty or never set.
NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
JSON_FIELDS = frozenset({
    "reply_markup", "entities", "caption_entities", "allowed_updates", "media", "commands",
    "scope", "link_preview_options", "reply_parameters",
})
# A webhook reply may carry a method call; these are never executed (PROTOCOLS.md §1.1).
NOT_FROM_WEBHOOK_REPLY = frozenset({"setwebhook", "deletewebhook", "close", "logout"})

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
CONFLICT_POLLER = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CANT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
BLOCKED = "Forbidden: bot was blocked by the user"
REASONS = {404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}
# Broken answers that are not the Bot API's (``fail_next(fault=...)``):
FAULTS = {
    # the error page of a proxy in front of the server (status: ``error_code``, default 500); with
    # error_code=404 it is a server that lacks the method, as a plain web server answers
    "html": "an HTML error page instead of JSON",
    # the method runs, and its JSON answer is cut in half (Content-Length matches what is sent)
    "truncated": "the answer's JSON cut short",
    # the method runs; the headers announce the whole answer, half of it is written, and the
    # connection is closed
    "reset": "the connection closed half-way through the answer",
    # getUpdates answers at once, as a server that ignores the long-poll timeout
    "instant": "a long poll answered at once",
}
# A command of setMyCommands: 1-32 of a-z, 0-9 and _ (Bot API, BotCommand).
COMMAND = re.compile(r"[a-z0-9_]{1,32}")

# Returned from the ASGI callable to make uvicorn close the connection without writing a
# response (h11_impl.run_asgi: a non-None result closes the transport). The client sees the
# connection drop, which is the fault being injected.
_DROP_CONNECTION = "drop the connection"


class _QuietDrop(logging.Filter):
    """Hides the error line uvicorn writes for a connection the fake drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and _DROP_CONNECTION in record.args)


_QUIET_DROP = _QuietDrop()


class ApiError(Exception):
    """An error answer of the Bot API: ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code,
                                "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(what: str) -> ApiError:
    return ApiError(400, f"Bad Request: {what}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


# --------------------------------------------------------------------------- public values


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent, as it stands now; ``edits`` holds the earlier versions in order."""

    chat_id: int
    message_id: int
    date: int
    text: str | None
    caption: str | None
    reply_markup: dict[str, Any] | None
    photo: str | None
    edits: tuple[dict[str, Any], ...]
    deleted: bool
    voice: str | None = None  # the file_id of a voice message the bot sent
    document: str | None = None  # the file_id of a file the bot sent


@dataclass(frozen=True)
class AnsweredCallback:
    callback_query_id: str
    user_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of an update to the webhook.

    ``status`` is None when no answer came back. ``retry_in`` is the wait before the next
    attempt in Telegram's seconds (before ``time_scale``); None once acknowledged or dropped.
    """

    update_id: int
    chat_id: int | None
    status: int | None
    error: str | None
    retry_in: float | None
    executed_method: str | None
    date: int


class ManualClock:
    """A clock for ``FakeTelegram(clock=...)`` that moves only when told to."""

    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


# --------------------------------------------------------------------------- internal state


@dataclass
class _Upload:
    filename: str
    content: bytes


@dataclass
class _File:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes | None

    def as_object(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"file_id": self.file_id, "file_unique_id": self.file_unique_id,
                               "file_path": self.file_path}
        if self.content is not None:
            obj["file_size"] = len(self.content)
        return obj


@dataclass
class _Message:
    data: dict[str, Any]
    from_bot: bool
    # What the bot sent as reply_markup, including reply keyboards that Telegram does not echo.
    sent_markup: dict[str, Any] | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


@dataclass
class _Chat:
    id: int
    obj: dict[str, Any]
    messages: dict[int, _Message] = field(default_factory=dict)
    next_message_id: int = 1

    @property
    def is_group(self) -> bool:
        return self.obj["type"] in ("group", "supergroup")


@dataclass
class _Update:
    update_id: int
    payload: dict[str, Any]
    chat_id: int | None
    created: float
    failures: int = 0
    due: float = 0.0
    in_flight: bool = False


@dataclass
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int


@dataclass
class _Callback:
    created: float
    user_id: int
    data: str
    answered: bool = False


@dataclass
class _Fault:
    remaining: int | None  # None: every matching call until reset()
    method: str | None
    error: ApiError | None
    delay: float | None
    drop: bool
    kind: str | None = None
    status: int = 500


@dataclass
class _Bot:
    token: str
    user: dict[str, Any]
    chats: dict[int, _Chat] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    updates: list[_Update] = field(default_factory=list)
    next_update_id: int = 100_000_001
    allowed_updates: list[str] | None = None
    webhook: _Webhook | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    dispatcher: asyncio.Task[None] | None = None
    poller: object | None = None
    callbacks: dict[str, _Callback] = field(default_factory=dict)
    answered: list[AnsweredCallback] = field(default_factory=list)
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    files: dict[str, _File] = field(default_factory=dict)
    chat_sends: dict[int, deque[float]] = field(default_factory=dict)
    all_sends: deque[float] = field(default_factory=deque)
    requests: Counter[str] = field(default_factory=Counter)

    @property
    def id(self) -> int:
        return int(self.user["id"])


class _VisibleText(HTMLParser):
    """The text a reader sees once Telegram has turned HTML markup into entities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _visible(text: str, parse_mode: Any) -> str:
    if str(parse_mode or "").upper() != "HTML":
        return text
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None


def _photo_size(content: bytes) -> tuple[int, int]:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            return image.size
    except Exception:  # noqa: BLE001 - any bytes are accepted; size is only informative
        return (800, 600)


def _tiny_jpeg() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(out, format="JPEG")
    return out.getvalue()


# --------------------------------------------------------------------------- the fake


class FakeTelegram:
    """The Bot API on loopback, for one or more bot tokens; an ASGI app.

    ``per_chat_per_second``, ``per_group_per_minute`` and ``global_per_second`` count messages
    sent (sendMessage, sendPhoto) in sliding windows on ``clock``; None turns a limit off.
    ``time_scale`` multiplies webhook retry delays (0.01 makes the 2 s retry take 20 ms).
    """

    def __init__(
        self,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        *,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
        per_chat_per_second: int | None = None,
        per_group_per_minute: int | None = None,
        global_per_second: int | None = None,
        webhook_timeout: float = 30.0,
        webhook_retry_cap: float = 60.0,
        bot_first_name: str = "Test bot",
    ) -> None:
        self.tokens = list(tokens)
        if not self.tokens:
            raise ValueError("at least one bot token is needed")
        for token in self.tokens:
            if not TOKEN.fullmatch(token):
                raise ValueError(f"{token!r} is not a bot token (<digits>:<secret>)")
        self.clock = clock
        self.time_scale = time_scale
        self.per_chat_per_second = per_chat_per_second
        self.per_group_per_minute = per_group_per_minute
        self.global_per_second = global_per_second
        self.webhook_timeout = webhook_timeout
        self.webhook_retry_cap = webhook_retry_cap
        self.bot_first_name = bot_first_name

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._watchers: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._client: httpx.AsyncClient | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._closing = False
        self._served: ServedApp | None = None
        self._ids = itertools.count(1)
        self._users: dict[int, dict[str, Any]] = {}
        self._bots: dict[str, _Bot] = {}
        self._reset_bots()
        self._methods: dict[str, Callable[[_Bot, dict[str, Any]], Any]] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendvoice": self._send_voice,
            "senddocument": self._send_document,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "deletemycommands": lambda bot, params: True,
            "sendchataction": self._send_chat_action,
        }

    # ------------------------------------------------------------------ serving

    def start(self) -> Self:
        """Serve on a free 127.0.0.1 port; ``url`` is then the Bot API base URL."""
        self._served = ServedApp(self).start()
        return self

    def stop(self) -> None:
        """End long polls, slow answers and webhook deliveries, then stop the server."""
        if self._served is None:
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        self._served.stop()
        self._served = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._served is None:
            raise RuntimeError("the fake is not being served: call start() or use `with`")
        return self._served.url

    def bot(self, token: str | None = None) -> Any:
        """A real aiogram Bot pointed at this fake; close it with ``await bot.session.close()``."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        session = AiohttpSession(api=TelegramAPIServer.from_base(self.url))
        return Bot(token or self.tokens[0], session=session)

    # ------------------------------------------------------------------ waiting

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait on the caller's event loop until ``predicate()`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the condition did not hold within {timeout} s")
            await asyncio.sleep(0.005)

    def wait_for_sync(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Block the calling thread until ``predicate()`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the condition did not hold within {timeout} s")
                # Woken by every state change; the short cap also notices clock-only changes.
                self._changed.wait(min(remaining, 0.05))

    # ------------------------------------------------------------------ control: people and chats

    def user(self, id: int, first_name: str, language_code: str = "zh-hans",
             username: str | None = None, last_name: str | None = None) -> dict[str, Any]:
        """Make a Telegram user known; the bot still cannot message them until they start it."""
        obj: dict[str, Any] = {"id": id, "is_bot": False, "first_name": first_name,
                               "language_code": language_code}
        if last_name:
            obj["last_name"] = last_name
        if username:
            obj["username"] = username
        with self._lock:
            self._users[id] = obj
            self._notify()
        return dict(obj)

    def group(self, chat_id: int, title: str, token: str | None = None,
              type: str = "group") -> dict[str, Any]:
        """Add the bot to a group chat (a negative id), so it may send there."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        with self._lock:
            bot = self._bot(token)
            chat = bot.chats.setdefault(chat_id, _Chat(chat_id, {"id": chat_id, "type": type,
                                                                 "title": title}))
            self._notify()
            return dict(chat.obj)

    def start_bot(self, user_id: int, payload: str | None = None,
                  token: str | None = None) -> dict[str, Any]:
        """The user presses Start: ``/start`` (with a deep-link payload) opens the private chat."""
        with self._lock:
            bot = self._bot(token)
            if user_id in bot.blocked:
                self.unblock(user_id, token)
            text = "/start" if payload is None else f"/start {payload}"
            entities = [{"type": "bot_command", "offset": 0, "length": 6}]
            return self._user_message(bot, user_id, None, {"text": text, "entities": entities})

    def inject_text(self, user_id: int, text: str, chat_id: int | None = None,
                    token: str | None = None) -> dict[str, Any]:
        """The user sends text in the private chat (or in group ``chat_id``)."""
        with self._lock:
            content: dict[str, Any] = {"text": text}
            if text.startswith("/"):
                command = text.split()[0]
                content["entities"] = [{"type": "bot_command", "offset": 0,
                                        "length": len(command)}]
            return self._user_message(self._bot(token), user_id, chat_id, content)

    def inject_location(self, user_id: int, latitude: float, longitude: float,
                        live_period: int | None = None, chat_id: int | None = None,
                        token: str | None = None) -> dict[str, Any]:
        """The user shares a location; with ``live_period`` it is a live location."""
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if live_period is not None:
            location["live_period"] = live_period
        with self._lock:
            return self._user_message(self._bot(token), user_id, chat_id,
                                      {"location": location})

    def inject_location_edit(self, user_id: int, message_id: int, latitude: float,
                             longitude: float, chat_id: int | None = None,
                             token: str | None = None) -> dict[str, Any]:
        """A live location moves: an ``edited_message`` update of the earlier message."""
        with self._lock:
            bot = self._bot(token)
            chat = self._chat_or_error(bot, user_id if chat_id is None else chat_id)
            message = chat.messages.get(message_id)
            if message is None or message.from_bot or "location" not in message.data:
                raise ValueError(f"message {message_id} is not a location the user shared")
            message.edits.append(json.loads(json.dumps(message.data)))
            message.data["location"] = {**message.data["location"],
                                        "latitude": latitude, "longitude": longitude}
            message.data["edit_date"] = self._now()
            return self._add_update(bot, "edited_message", dict(message.data), chat.id)

    def inject_photo(self, user_id: int, content: bytes | None = None, caption: str | None = None,
                     chat_id: int | None = None, token: str | None = None) -> dict[str, Any]:
        """The user sends a photo; its sizes can be fetched with getFile and downloaded."""
        content = _tiny_jpeg() if content is None else content
        with self._lock:
            bot = self._bot(token)
            extra: dict[str, Any] = {"photo": self._photo_sizes(bot, content)}
            if caption:
                extra["caption"] = caption
            return self._user_message(bot, user_id, chat_id, extra)

    def inject_document(self, user_id: int, content: bytes, file_name: str, mime_type: str,
                        caption: str | None = None, chat_id: int | None = None,
                        token: str | None = None) -> dict[str, Any]:
        """The user sends a file (a picture "as a file" among them); getFile serves it under
        documents/, with the file name's extension, as Telegram does."""
        with self._lock:
            bot = self._bot(token)
            n = next(self._ids)
            suffix = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
            stored = _File(f"BQAD{bot.id}-{n}", f"AgAD{n}", f"documents/file_{n}.{suffix}".rstrip("."),
                           content)
            bot.files[stored.file_id] = stored
            extra: dict[str, Any] = {"document": {
                "file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                "file_name": file_name, "mime_type": mime_type, "file_size": len(content)}}
            if caption:
                extra["caption"] = caption
            return self._user_message(bot, user_id, chat_id, extra)

    def inject_voice(self, user_id: int, content: bytes, duration: int = 5,
                     chat_id: int | None = None, token: str | None = None) -> dict[str, Any]:
        """The user records a voice note (Ogg Opus, served by getFile under voice/)."""
        with self._lock:
            bot = self._bot(token)
            n = next(self._ids)
            stored = _File(f"AwAD{bot.id}-{n}", f"AgAD{n}", f"voice/file_{n}.oga", content)
            bot.files[stored.file_id] = stored
            voice = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                     "duration": duration, "mime_type": "audio/ogg", "file_size": len(content)}
            return self._user_message(bot, user_id, chat_id, {"voice": voice})

    def inject_callback_query(self, user_id: int, message_id: int, data: str,
                              chat_id: int | None = None,
                              token: str | None = None) -> dict[str, Any]:
        """The user taps the inline button carrying ``data`` on a message the bot sent."""
        with self._lock:
            bot = self._bot(token)
            chat = self._chat_or_error(bot, user_id if chat_id is None else chat_id)
            message = chat.messages.get(message_id)
            if message is None or not message.from_bot or message.deleted:
                raise ValueError(f"the bot sent no message {message_id} in chat {chat.id}")
            buttons = message.data.get("reply_markup", {}).get("inline_keyboard", [])
            if not any(b.get("callback_data") == data for row in buttons for b in row):
                raise ValueError(f"message {message_id} has no button with callback_data {data!r}")
            query_id = str(4_000_000_000_000_000_000 + next(self._ids))
            bot.callbacks[query_id] = _Callback(self.clock(), user_id, data)
            query = {"id": query_id, "from": self._user(user_id),
                     "message": json.loads(json.dumps(message.data)),
                     "chat_instance": str(abs(hash((bot.id, chat.id)))), "data": data}
            return self._add_update(bot, "callback_query", query, chat.id)

    def block(self, user_id: int, token: str | None = None) -> dict[str, Any]:
        """The user blocks the bot: a ``my_chat_member`` update, and later sends get 403."""
        with self._lock:
            bot = self._bot(token)
            bot.blocked.add(user_id)
            return self._member_update(bot, user_id, "member", "kicked")

    def unblock(self, user_id: int, token: str | None = None) -> dict[str, Any]:
        """The user unblocks the bot (``my_chat_member`` from kicked to member)."""
        with self._lock:
            bot = self._bot(token)
            bot.blocked.discard(user_id)
            return self._member_update(bot, user_id, "kicked", "member")

    # ------------------------------------------------------------------ control: observing

    def sent(self, chat_id: int, token: str | None = None) -> list[SentMessage]:
        """What the bot sent in one chat, oldest first, with edits applied."""
        with self._lock:
            chat = self._bot(token).chats.get(chat_id)
            if chat is None:
                return []
            return [self._sent_message(chat.id, m) for m in chat.messages.values() if m.from_bot]

    def answered_callbacks(self, token: str | None = None) -> list[AnsweredCallback]:
        with self._lock:
            return list(self._bot(token).answered)

    def webhook_attempts(self, token: str | None = None) -> list[DeliveryAttempt]:
        with self._lock:
            return list(self._bot(token).attempts)

    def pending_updates(self, token: str | None = None) -> list[dict[str, Any]]:
        """Updates stored and not yet confirmed (getUpdates offset) or acknowledged (webhook)."""
        with self._lock:
            bot = self._bot(token)
            self._expire(bot)
            return [json.loads(json.dumps(u.payload)) for u in bot.updates]

    def polling(self, token: str | None = None) -> bool:
        """Whether a getUpdates request is in progress (for example, a long poll waiting)."""
        with self._lock:
            return self._bot(token).poller is not None

    def webhook_info(self, token: str | None = None) -> dict[str, Any]:
        with self._lock:
            return self._get_webhook_info(self._bot(token), {})

    # ------------------------------------------------------------------ control: faults and reset

    def fail_next(self, count: int | None = 1, *, method: str | None = None,
                  error_code: int | None = None, retry_after: int | None = None,
                  description: str | None = None, delay: float | None = None,
                  drop: bool = False, fault: str | None = None, token: str | None = None) -> None:
        """Make the next ``count`` calls (of ``method``, if given; every one until ``reset()``
        when ``count`` is None) misbehave.

        ``retry_after`` answers 429 with that value; ``error_code`` answers that status
        (500, 502 ...); ``delay`` answers normally after that many real seconds; ``drop``
        closes the connection without an answer; ``fault`` is one of ``FAULTS`` (with
        ``fault="html"``, ``error_code`` is the page's status).
        """
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"fault must be one of {sorted(FAULTS)}")
        error = None
        if retry_after is not None:
            error = too_many_requests(retry_after)
        elif error_code is not None and fault != "html":
            error = ApiError(error_code, description or REASONS.get(error_code, "Error"))
        if error is None and delay is None and not drop and fault is None:
            raise ValueError("say what should go wrong: retry_after, error_code, delay, drop or fault")
        with self._lock:
            self._bot(token).faults.append(
                _Fault(count, method.lower() if method else None, error, delay, drop, fault,
                       error_code or 500))

    def requests(self, method: str | None = None, token: str | None = None) -> int:
        """How many Bot API requests (of ``method``) the server received, whatever it answered."""
        with self._lock:
            counted = self._bot(token).requests
            return counted[method.lower()] if method else sum(counted.values())

    def reset(self) -> None:
        """Forget users, chats, updates, webhooks, faults and records; keep tokens and settings."""
        with self._lock:
            for bot in self._bots.values():
                if bot.dispatcher is not None and self._loop is not None:
                    self._loop.call_soon_threadsafe(bot.dispatcher.cancel)
            self._users.clear()
            self._reset_bots()
            self._notify()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> Any:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return None
        if scope["type"] != "http":
            return None
        path: str = scope["path"]
        request = Request(scope, receive)
        try:
            if path.startswith(CONTROL_PREFIX):
                response = await self._control(request, path[len(CONTROL_PREFIX):])
            elif match := re.fullmatch(r"/file/bot([^/]+)/(.+)", path):
                response = self._download(match[1], match[2])
            elif match := re.fullmatch(r"/bot([^/]+)/([^/]+)/?", path):
                response = await self._api(request, match[1], match[2])
            else:
                response = self._error(ApiError(404, "Not Found"))
        except _Drop:
            logging.getLogger("uvicorn.error").addFilter(_QUIET_DROP)
            return _DROP_CONNECTION
        except _Cut as cut:
            # The whole answer is announced, half of it is written, then the connection closes.
            body = cut.response.body
            headers = [(k, v) for k, v in cut.response.raw_headers if k != b"content-length"]
            await send({"type": "http.response.start", "status": cut.response.status_code,
                        "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body[:len(body) // 2],
                        "more_body": True})
            logging.getLogger("uvicorn.error").addFilter(_QUIET_DROP)
            return _DROP_CONNECTION
        await response(scope, receive, send)
        return None

    async def _lifespan(self, receive: Callable[[], Awaitable[Any]],
                        send: Callable[[Any], Awaitable[None]]) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                with self._lock:
                    self._loop = asyncio.get_running_loop()
                    self._loop_thread = threading.get_ident()
                    self._closing = False
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _shutdown(self) -> None:
        with self._lock:
            self._closing = True
            tasks = [b.dispatcher for b in self._bots.values() if b.dispatcher is not None]
            tasks += list(self._deliveries)
            self._notify()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _error(self, error: ApiError) -> Response:
        return Response(json.dumps(error.body()), status_code=error.error_code,
                        media_type="application/json")

    def _ok(self, result: Any) -> Response:
        return Response(json.dumps({"ok": True, "result": result}, ensure_ascii=False),
                        media_type="application/json")

    async def _api(self, request: Request, token: str, method_name: str) -> Response:
        bot = self._bots.get(token)
        if bot is None:
            return self._error(ApiError(401, "Unauthorized"))
        method = method_name.lower()
        with self._lock:
            bot.requests[method] += 1
            fault = self._take_fault(bot, method)
        if fault is not None and fault.kind == "html":
            return _html_page(fault.status)
        if method != "getupdates" and method not in self._methods:
            return self._error(ApiError(404, "Not Found"))
        try:
            params = await self._read_params(request)
            if fault is not None:
                if fault.drop:
                    raise _Drop
                if fault.error is not None:
                    raise fault.error
                if fault.delay:
                    await self._sleep(fault.delay)
                if fault.kind == "instant":
                    params["timeout"] = 0
            if method == "getupdates":
                response = self._ok(await self._get_updates(bot, params))
            else:
                with self._lock:
                    try:
                        response = self._ok(self._methods[method](bot, params))
                    finally:
                        self._notify()
        except ApiError as error:
            response = self._error(error)
        if fault is not None and fault.kind == "truncated":
            return Response(response.body[:len(response.body) // 2], status_code=response.status_code,
                            media_type="application/json")
        if fault is not None and fault.kind == "reset":
            raise _Cut(response)
        return response

    def _download(self, token: str, file_path: str) -> Response:
        with self._lock:
            bot = self._bots.get(token)
            if bot is None:
                return self._error(ApiError(401, "Unauthorized"))
            found = next((f for f in bot.files.values() if f.file_path == file_path), None)
            if found is None or found.content is None:
                return self._error(ApiError(404, "Not Found"))
            return Response(found.content, media_type="application/octet-stream")

    async def _read_params(self, request: Request) -> dict[str, Any]:
        """Parameters from the query string and any body, as PROTOCOLS.md §1.3 item 2 lists."""
        params: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        uploads: dict[str, _Upload] = {}
        if body:
            if content_type.startswith("application/json"):
                try:
                    data = json.loads(body)
                except ValueError:
                    raise bad_request("can't parse JSON encoded request") from None
                if not isinstance(data, dict):
                    raise bad_request("can't parse JSON encoded request")
                params.update(data)
            elif content_type.startswith("multipart/form-data"):
                head = f"Content-Type: {content_type}\r\n\r\n".encode()
                message = BytesParser(policy=HTTP).parsebytes(head + body)
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if not isinstance(name, str):
                        continue
                    payload = part.get_payload(decode=True)
                    content = payload if isinstance(payload, bytes) else b""
                    if part.get_filename() is not None:
                        uploads[name] = _Upload(part.get_filename() or name, content)
                        params[name] = uploads[name]
                    else:
                        params[name] = content.decode()
            else:
                params.update(parse_qsl(body.decode(), keep_blank_values=True))
        for name, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                upload = uploads.get(value[len("attach://"):])
                if upload is None:
                    raise bad_request(f"file {value} not found in the request")
                params[name] = upload
            elif name in JSON_FIELDS and isinstance(value, str):
                try:
                    params[name] = json.loads(value)
                except ValueError:
                    raise bad_request(f"can't parse {name} JSON object") from None
        return params

    # ------------------------------------------------------------------ control over HTTP

    async def _control(self, request: Request, name: str) -> Response:
        methods: dict[str, Callable[..., Any]] = {
            "user": self.user, "group": self.group, "start_bot": self.start_bot,
            "inject_text": self.inject_text, "inject_location": self.inject_location,
            "inject_location_edit": self.inject_location_edit,
            "inject_photo": self.inject_photo, "inject_callback_query": self.inject_callback_query,
            "block": self.block, "unblock": self.unblock, "sent": self.sent,
            "answered_callbacks": self.answered_callbacks,
            "webhook_attempts": self.webhook_attempts, "pending_updates": self.pending_updates,
            "webhook_info": self.webhook_info, "polling": self.polling,
            "fail_next": self.fail_next, "reset": self.reset, "requests": self.requests,
        }
        if name not in methods:
            return Response(json.dumps({"ok": False, "description": f"no control method {name}"}),
                            status_code=404, media_type="application/json")
        kwargs: dict[str, Any] = {k: int(v) if re.fullmatch(r"-?\d+", v) else v
                                  for k, v in request.query_params.items()}
        body = await request.body()
        if body:
            data = json.loads(body)
            if isinstance(data, dict):
                kwargs.update(data)
        if "content_base64" in kwargs:
            kwargs["content"] = base64.b64decode(kwargs.pop("content_base64"))
        try:
            result = methods[name](**kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            return Response(json.dumps({"ok": False, "description": str(exc)}, ensure_ascii=False),
                            status_code=400, media_type="application/json")
        return self._ok(_plain(result))

    # ------------------------------------------------------------------ Bot API methods

    def _get_me(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        return dict(bot.user)

    def _send_message(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        text = _visible(str(params.get("text") or ""), params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        markup = self._checked_markup(params.get("reply_markup"))
        chat = self._chat_for_sending(bot, params.get("chat_id"))
        self._count_send(bot, chat)
        content: dict[str, Any] = {"text": text}
        if isinstance(params.get("entities"), list):
            content["entities"] = params["entities"]
        return dict(self._bot_message(bot, chat, content, markup).data)

    def _send_photo(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        caption = _visible(str(params.get("caption") or ""), params.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise bad_request("message caption is too long")
        markup = self._checked_markup(params.get("reply_markup"))
        chat = self._chat_for_sending(bot, params.get("chat_id"))
        photo = params.get("photo")
        if isinstance(photo, _Upload):
            sizes = self._photo_sizes(bot, photo.content)
        elif isinstance(photo, str) and photo in bot.files:
            sizes = [{"file_id": photo, "file_unique_id": bot.files[photo].file_unique_id,
                      "width": 800, "height": 600}]
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            sizes = [self._register_file(bot, None, 800, 600)]
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        self._count_send(bot, chat)
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        return dict(self._bot_message(bot, chat, content, markup).data)

    def _send_voice(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        return self._send_file(bot, params, "voice", "voice/file_{n}.oga", "audio/ogg")

    def _send_document(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        return self._send_file(bot, params, "document", "documents/file_{n}", None)

    def _send_file(self, bot: _Bot, params: dict[str, Any], field: str, path: str,
                   mime_type: str | None) -> dict[str, Any]:
        """sendVoice / sendDocument with an upload or a file_id this bot knows."""
        markup = self._checked_markup(params.get("reply_markup"))
        chat = self._chat_for_sending(bot, params.get("chat_id"))
        sent = params.get(field)
        if isinstance(sent, _Upload):
            n = next(self._ids)
            stored = _File(f"BQAD{bot.id}-{n}", f"AgAD{n}", path.format(n=n), sent.content)
            bot.files[stored.file_id] = stored
            name = sent.filename
        elif isinstance(sent, str) and sent in bot.files:
            stored, name = bot.files[sent], sent
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        self._count_send(bot, chat)
        described: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                                     "file_size": len(stored.content or b"")}
        if field == "voice":
            described |= {"duration": 1, "mime_type": mime_type}
        else:
            described |= {"file_name": name}
        return dict(self._bot_message(bot, chat, {field: described}, markup).data)

    def _edit_message_text(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_to_edit(bot, params)
        text = _visible(str(params.get("text") or ""), params.get("parse_mode"))
        if not text.strip():
            raise bad_request("message text is empty")
        if len(text) > MAX_TEXT:
            raise bad_request("message is too long")
        markup = self._checked_markup(params.get("reply_markup"))
        return self._apply_edit(message, {"text": text}, markup, params)

    def _edit_message_reply_markup(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        message = self._message_to_edit(bot, params)
        markup = self._checked_markup(params.get("reply_markup"))
        return self._apply_edit(message, {}, markup, params)

    def _delete_message(self, bot: _Bot, params: dict[str, Any]) -> bool:
        chat = bot.chats.get(_int(params, "chat_id") or 0)
        message = chat.messages.get(_int(params, "message_id") or 0) if chat else None
        if message is None or message.deleted:
            raise bad_request("message to delete not found")
        message.deleted = True
        return True

    def _answer_callback_query(self, bot: _Bot, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = bot.callbacks.get(query_id)
        if (query is None or query.answered
                or self.clock() - query.created > CALLBACK_ANSWER_WINDOW):
            raise bad_request(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        query.answered = True
        bot.answered.append(AnsweredCallback(
            callback_query_id=query_id, user_id=query.user_id, data=query.data,
            text=params.get("text") or None, show_alert=_flag(params.get("show_alert")),
            url=params.get("url") or None))
        return True

    def _set_my_commands(self, bot: _Bot, params: dict[str, Any]) -> bool:
        """Commands are checked as Telegram checks them; nothing else is kept."""
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand JSON object")
            if not COMMAND.fullmatch(str(command.get("command") or "")):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description") or "")) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        language = str(params.get("language_code") or "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return True

    def _send_chat_action(self, bot: _Bot, params: dict[str, Any]) -> bool:
        self._chat_for_sending(bot, params.get("chat_id"))
        return True

    def _get_file(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        found = bot.files.get(str(params.get("file_id") or ""))
        if found is None:
            raise bad_request("invalid file_id")
        if found.content is not None and len(found.content) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return found.as_object()

    def _set_webhook(self, bot: _Bot, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return self._delete_webhook(bot, params)
        parts = urlsplit(url)
        # A local-mode server accepts plain http and any port (PROTOCOLS.md §1.1).
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token") or None
        if secret is not None:
            if len(secret) > 256:
                raise bad_request("secret token is too long")
            if not SECRET_TOKEN.fullmatch(secret):
                raise bad_request("secret token contains unallowed characters")
        max_connections = min(max(_int(params, "max_connections", 40) or 40, 1), 100)
        if "allowed_updates" in params:
            bot.allowed_updates = self._allowed(params["allowed_updates"])
        if _flag(params.get("drop_pending_updates")):
            bot.updates.clear()
        if bot.webhook is None or bot.webhook.url != url:
            bot.last_error_date = bot.last_error_message = None
        bot.webhook = _Webhook(url, secret, max_connections)
        for update in bot.updates:
            update.failures, update.due = 0, 0.0
        self._start_dispatcher(bot)
        return True

    def _delete_webhook(self, bot: _Bot, params: dict[str, Any]) -> bool:
        bot.webhook = None
        if _flag(params.get("drop_pending_updates")):
            bot.updates.clear()
        return True

    def _get_webhook_info(self, bot: _Bot, params: dict[str, Any]) -> dict[str, Any]:
        self._expire(bot)
        info: dict[str, Any] = {"url": bot.webhook.url if bot.webhook else "",
                                "has_custom_certificate": False,
                                "pending_update_count": len(bot.updates)}
        if bot.webhook is not None:
            info["max_connections"] = bot.webhook.max_connections
            info["ip_address"] = "127.0.0.1"
        if bot.allowed_updates is not None:
            info["allowed_updates"] = list(bot.allowed_updates)
        if bot.last_error_date is not None:
            info["last_error_date"] = bot.last_error_date
            info["last_error_message"] = bot.last_error_message
        return info

    async def _get_updates(self, bot: _Bot, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = _int(params, "offset", 0) or 0
        limit = min(max(_int(params, "limit", 100) or 100, 1), 100)
        timeout = max(_int(params, "timeout", 0) or 0, 0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ticket = object()
        with self._lock:
            if bot.webhook is not None:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if "allowed_updates" in params:
                bot.allowed_updates = self._allowed(params["allowed_updates"])
            # A newer request ends the one still waiting (PROTOCOLS.md §1.1, 409 errors).
            bot.poller = ticket
            self._confirm(bot, offset)
            self._notify()
        while True:
            with self._lock:
                if bot.poller is not ticket:
                    raise ApiError(409, CONFLICT_POLLER)
                if bot.webhook is not None:
                    bot.poller = None
                    raise ApiError(409, CONFLICT_WEBHOOK)
                self._expire(bot)
                found = [json.loads(json.dumps(u.payload)) for u in bot.updates[:limit]]
                if found or self._closing or loop.time() >= deadline:
                    bot.poller = None
                    return found
                watcher = self._watch()
            await self._wait(watcher, deadline - loop.time())

    # ------------------------------------------------------------------ method helpers

    def _checked_markup(self, markup: Any) -> dict[str, Any] | None:
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            return markup
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad_request("can't parse inline keyboard button: "
                              "field \"inline_keyboard\" must be an Array of Arrays")
        for row in rows:
            for button in row:
                data = button.get("callback_data") if isinstance(button, dict) else None
                if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise bad_request("BUTTON_DATA_INVALID")
                if isinstance(button, dict) and len(button) < 2:
                    raise bad_request("can't parse inline keyboard button: "
                                      "Text buttons are unallowed in the inline keyboard")
        return markup

    def _chat_for_sending(self, bot: _Bot, raw_chat_id: Any) -> _Chat:
        """The chat a send goes to, or the error Telegram gives (PROTOCOLS.md §1.2, reaching users)."""
        try:
            chat_id = int(raw_chat_id)
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        if chat_id in bot.blocked:
            raise ApiError(403, BLOCKED)
        chat = bot.chats.get(chat_id)
        if chat is not None:
            return chat
        if chat_id in self._users:
            raise ApiError(403, CANT_INITIATE)
        raise bad_request("chat not found")

    def _count_send(self, bot: _Bot, chat: _Chat) -> None:
        """Apply the per-chat, per-group and global limits (PROTOCOLS.md §0 trap 2)."""
        now = self.clock()
        window = bot.chat_sends.setdefault(chat.id, deque())
        checks: list[tuple[deque[float], int | None, float]] = [(bot.all_sends,
                                                                 self.global_per_second, 1.0)]
        if chat.is_group:
            checks.append((window, self.per_group_per_minute, 60.0))
        else:
            checks.append((window, self.per_chat_per_second, 1.0))
        longest = max(span for _, _, span in checks)
        for times in (bot.all_sends, window):
            while times and times[0] <= now - longest:
                times.popleft()
        for times, limit, span in checks:
            if limit is None:
                continue
            recent = [t for t in times if t > now - span]
            if len(recent) >= limit:
                raise too_many_requests(max(1, math.ceil(recent[-limit] + span - now)))
        bot.all_sends.append(now)
        window.append(now)

    def _message_to_edit(self, bot: _Bot, params: dict[str, Any]) -> _Message:
        if params.get("inline_message_id"):
            raise bad_request("MESSAGE_ID_INVALID")
        chat_id = _int(params, "chat_id")
        if chat_id in bot.blocked:
            raise ApiError(403, BLOCKED)
        chat = bot.chats.get(chat_id) if chat_id is not None else None
        if chat is None:
            raise bad_request("chat not found")
        message = chat.messages.get(_int(params, "message_id") or 0)
        if message is None or message.deleted:
            raise bad_request("message to edit not found")
        if not message.from_bot:
            raise bad_request("message can't be edited")
        return message

    def _apply_edit(self, message: _Message, content: dict[str, Any],
                    markup: dict[str, Any] | None, params: dict[str, Any]) -> dict[str, Any]:
        inline = markup if markup and "inline_keyboard" in markup else None
        same_content = all(message.data.get(k) == v for k, v in content.items())
        if same_content and message.data.get("reply_markup") == inline:
            raise bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        message.edits.append(json.loads(json.dumps(message.data)))
        message.data.update(content)
        if "text" in content:
            message.data.pop("entities", None)
            if isinstance(params.get("entities"), list):
                message.data["entities"] = params["entities"]
        if inline is None:
            message.data.pop("reply_markup", None)
        else:
            message.data["reply_markup"] = inline
        message.sent_markup = inline
        message.data["edit_date"] = self._now()
        return dict(message.data)

    def _bot_message(self, bot: _Bot, chat: _Chat, content: dict[str, Any],
                     markup: dict[str, Any] | None) -> _Message:
        data = {"message_id": chat.next_message_id, "date": self._now(),
                "chat": dict(chat.obj), "from": dict(bot.user), **content}
        # Message.reply_markup is only ever an inline keyboard; other keyboards are not echoed.
        if markup and "inline_keyboard" in markup:
            data["reply_markup"] = markup
        message = _Message(data=data, from_bot=True, sent_markup=markup)
        chat.messages[chat.next_message_id] = message
        chat.next_message_id += 1
        return message

    def _photo_sizes(self, bot: _Bot, content: bytes) -> list[dict[str, Any]]:
        width, height = _photo_size(content)
        scale = min(1.0, 90 / max(width, height, 1))
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        # Smallest first, as Telegram orders PhotoSize lists (PROTOCOLS.md §1.2).
        return [self._register_file(bot, content, *small),
                self._register_file(bot, content, width, height)]

    def _register_file(self, bot: _Bot, content: bytes | None, width: int,
                       height: int) -> dict[str, Any]:
        n = next(self._ids)
        stored = _File(f"AgAD{bot.id}-{n}", f"AQAD{n}", f"photos/file_{n}.jpg", content)
        bot.files[stored.file_id] = stored
        size: dict[str, Any] = {"file_id": stored.file_id,
                                "file_unique_id": stored.file_unique_id,
                                "width": width, "height": height}
        if content is not None:
            size["file_size"] = len(content)
        return size

    @staticmethod
    def _allowed(value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise bad_request("can't parse allowed_updates JSON object")
        return [str(v) for v in value]

    # ------------------------------------------------------------------ updates

    def _add_update(self, bot: _Bot, kind: str, obj: dict[str, Any],
                    chat_id: int | None) -> dict[str, Any]:
        update_id = bot.next_update_id
        update: dict[str, Any] = {"update_id": update_id, kind: obj}
        bot.next_update_id += 1
        allowed = bot.allowed_updates
        wanted = kind in allowed if allowed else kind not in NOT_BY_DEFAULT
        if wanted:
            bot.updates.append(_Update(update_id, update, chat_id, self.clock()))
        self._notify()
        copy: dict[str, Any] = json.loads(json.dumps(update))
        return copy

    def _confirm(self, bot: _Bot, offset: int) -> None:
        if offset > 0:
            bot.updates = [u for u in bot.updates if u.update_id >= offset]
        elif offset < 0:
            # A negative offset keeps the last -offset updates and forgets the rest.
            bot.updates = bot.updates[offset:]

    def _expire(self, bot: _Bot) -> None:
        oldest = self.clock() - UPDATE_TTL
        bot.updates = [u for u in bot.updates if u.created > oldest or u.in_flight]

    def _user_message(self, bot: _Bot, user_id: int, chat_id: int | None,
                      content: dict[str, Any]) -> dict[str, Any]:
        user = self._user(user_id)
        if chat_id is None or chat_id == user_id:
            chat = bot.chats.get(user_id)
            if chat is None:
                obj: dict[str, Any] = {k: user[k] for k in ("first_name", "last_name", "username") if k in user}
                chat = bot.chats[user_id] = _Chat(user_id, {"id": user_id, "type": "private",
                                                            **obj})
        else:
            chat = self._chat_or_error(bot, chat_id)
        data = {"message_id": chat.next_message_id, "date": self._now(),
                "chat": dict(chat.obj), "from": dict(user), **content}
        chat.messages[chat.next_message_id] = _Message(data=data, from_bot=False)
        chat.next_message_id += 1
        return self._add_update(bot, "message", json.loads(json.dumps(data)), chat.id)

    def _member_update(self, bot: _Bot, user_id: int, old: str, new: str) -> dict[str, Any]:
        user = self._user(user_id)
        chat = bot.chats.get(user_id)
        chat_obj = dict(chat.obj) if chat else {"id": user_id, "type": "private",
                                                "first_name": user["first_name"]}
        new_member: dict[str, Any] = {"status": new, "user": dict(bot.user)}
        if new == "kicked":
            new_member["until_date"] = 0
        old_member: dict[str, Any] = {"status": old, "user": dict(bot.user)}
        if old == "kicked":
            old_member["until_date"] = 0
        update = {"chat": chat_obj, "from": dict(user), "date": self._now(),
                  "old_chat_member": old_member, "new_chat_member": new_member}
        return self._add_update(bot, "my_chat_member", update, user_id)

    # ------------------------------------------------------------------ webhook delivery

    def _start_dispatcher(self, bot: _Bot) -> None:
        if bot.dispatcher is None or bot.dispatcher.done():
            bot.dispatcher = asyncio.get_running_loop().create_task(self._dispatch(bot))

    async def _dispatch(self, bot: _Bot) -> None:
        """Send the head update of each chat, at most max_connections at once (§1.3 item 7)."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                hook = bot.webhook
                if hook is None or self._closing:
                    bot.dispatcher = None
                    return
                self._expire(bot)
                now = loop.time()
                heads: dict[tuple[str, int], _Update] = {}
                for update in bot.updates:
                    # Updates without a chat are independent of one another.
                    key = (("chat", update.chat_id) if update.chat_id is not None
                           else ("update", update.update_id))
                    heads.setdefault(key, update)
                busy = sum(1 for u in bot.updates if u.in_flight)
                ready = [u for u in heads.values() if not u.in_flight and u.due <= now]
                for update in ready[:max(0, hook.max_connections - busy)]:
                    update.in_flight = True
                    task = loop.create_task(self._deliver(bot, hook, update))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
                waiting = [u.due for u in heads.values() if not u.in_flight and u.due > now]
                watcher = self._watch()
            await self._wait(watcher, min(waiting) - now if waiting else None)

    async def _deliver(self, bot: _Bot, hook: _Webhook, update: _Update) -> None:
        headers = {"Content-Type": "application/json"}
        if hook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        reply: Any = None
        if self._client is None:
            # Made on first use: building its TLS context costs more than a whole test's traffic.
            self._client = httpx.AsyncClient()
        try:
            response = await self._client.post(hook.url, content=json.dumps(update.payload),
                                               headers=headers, timeout=self.webhook_timeout)
        except httpx.TimeoutException:
            error = "Read timeout expired"
        except httpx.ConnectError:
            error = "Connection refused"
        except httpx.HTTPError:
            error = "Connection closed"
        else:
            status = response.status_code
            if 200 <= status < 300:
                reply = _reply_call(response)
            else:
                error = f"Wrong response from the webhook: {status} {response.reason_phrase}"
                header = response.headers.get("retry-after", "")
                if header.isdigit():
                    retry_after = min(float(header), MAX_RETRY_AFTER)
        with self._lock:
            update.in_flight = False
            executed = retry_in = None
            if error is None:
                if update in bot.updates:
                    bot.updates.remove(update)
                executed = self._execute_reply(bot, reply)
            else:
                retry_in = self._schedule_retry(bot, update, error, retry_after)
            bot.attempts.append(DeliveryAttempt(update.update_id, update.chat_id, status, error,
                                                retry_in, executed, self._now()))
            self._notify()

    def _schedule_retry(self, bot: _Bot, update: _Update, error: str,
                        retry_after: float | None) -> float | None:
        """Retry the same update: at once, then 2, 4, 8 s ... capped (PROTOCOLS.md §1.1).

        Returns the delay, or None when the update would outlive its 24 h and is dropped.
        """
        bot.last_error_date = self._now()
        bot.last_error_message = error
        update.failures += 1
        if retry_after is not None:
            delay = retry_after
        elif update.failures == 1:
            delay = 0.0
        else:
            delay = min(2.0 ** (update.failures - 1), self.webhook_retry_cap)
        if self.clock() + delay > update.created + UPDATE_TTL:
            if update in bot.updates:
                bot.updates.remove(update)
            return None
        loop = asyncio.get_running_loop()
        update.due = loop.time() + delay * self.time_scale
        return delay

    def _execute_reply(self, bot: _Bot, reply: Any) -> str | None:
        """Run a method call found in a 2xx webhook answer; the bot never learns the result."""
        if not isinstance(reply, dict) or not isinstance(reply.get("method"), str):
            return None
        name: str = reply["method"]
        method = name.lower()
        if method.startswith("get") or method in NOT_FROM_WEBHOOK_REPLY:
            return None
        handler = self._methods.get(method)
        if handler is None:
            return None
        params = {k: v for k, v in reply.items() if k != "method"}
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    return None
        try:
            handler(bot, params)
        except ApiError:
            return None
        return name

    # ------------------------------------------------------------------ plumbing

    def _bot(self, token: str | None) -> _Bot:
        return self._bots[token or self.tokens[0]]

    def _reset_bots(self) -> None:
        self._bots = {}
        for token in self.tokens:
            bot_id = int(token.split(":", 1)[0])
            user = {"id": bot_id, "is_bot": True, "first_name": self.bot_first_name,
                    "username": f"test_{bot_id}_bot", "can_join_groups": True,
                    "can_read_all_group_messages": False, "supports_inline_queries": False}
            self._bots[token] = _Bot(token=token, user=user)

    def _user(self, user_id: int) -> dict[str, Any]:
        if user_id not in self._users:
            self._users[user_id] = {"id": user_id, "is_bot": False,
                                    "first_name": f"User {user_id}", "language_code": "zh-hans"}
        return dict(self._users[user_id])

    def _chat_or_error(self, bot: _Bot, chat_id: int) -> _Chat:
        chat = bot.chats.get(chat_id)
        if chat is None:
            raise ValueError(f"chat {chat_id} does not exist yet")
        return chat

    def _sent_message(self, chat_id: int, message: _Message) -> SentMessage:
        data = message.data
        photo = data.get("photo")
        return SentMessage(
            chat_id=chat_id, message_id=data["message_id"], date=data["date"],
            text=data.get("text"), caption=data.get("caption"),
            reply_markup=json.loads(json.dumps(message.sent_markup))
            if message.sent_markup else None,
            photo=photo[-1]["file_id"] if photo else None,
            edits=tuple(json.loads(json.dumps(e)) for e in message.edits),
            deleted=message.deleted,
            voice=data["voice"]["file_id"] if "voice" in data else None,
            document=data["document"]["file_id"] if "document" in data else None)

    def _take_fault(self, bot: _Bot, method: str) -> _Fault | None:
        for fault in bot.faults:
            if fault.method is None or fault.method == method:
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        bot.faults.remove(fault)
                return fault
        return None

    def _now(self) -> int:
        return int(self.clock())

    def _watch(self) -> asyncio.Event:
        """An event set at the next state change; register it under the lock, then await it."""
        event = asyncio.Event()
        self._watchers.add(event)
        return event

    def _notify(self) -> None:
        """Wake long polls and the webhook dispatcher on the server loop, and sync waiters."""
        self._changed.notify_all()
        watchers, self._watchers = self._watchers, set()
        if not watchers or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            for event in watchers:
                event.set()
        else:
            try:
                self._loop.call_soon_threadsafe(_set_all, watchers)
            except RuntimeError:
                pass  # the server loop has already closed; nobody is waiting on it

    async def _wait(self, watcher: asyncio.Event, timeout: float | None) -> None:
        if self._closing:
            return
        try:
            await asyncio.wait_for(watcher.wait(), timeout)
        except TimeoutError:
            pass

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but end early when the server stops so shutdown never waits on a fault."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._closing and loop.time() < deadline:
            with self._lock:
                watcher = self._watch()
            await self._wait(watcher, deadline - loop.time())


class _Drop(Exception):
    """Raised inside a request to close its connection without an answer."""


class _Cut(Exception):
    """Raised inside a request to write half of ``response`` and close the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__("cut")
        self.response = response


def _html_page(status: int) -> Response:
    """The error page a proxy (nginx) in front of the Bot API server answers with."""
    reason = REASONS.get(status, "Error")
    page = (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n")
    return Response(page, status_code=status, media_type="text/html")


def _set_all(events: Iterable[asyncio.Event]) -> None:
    for event in events:
        event.set()


def _reply_call(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            return response.json()
        if content_type.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(response.text, keep_blank_values=True))
    except ValueError:
        return None
    return None


def _plain(value: Any) -> Any:
    """Control API results as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "DEFAULT_TOKEN",
    "FAULTS",
    "AnsweredCallback",
    "ApiError",
    "DeliveryAttempt",
    "FakeTelegram",
    "ManualClock",
    "SentMessage",
]
