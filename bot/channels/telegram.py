"""The Telegram channel (aiogram 3): updates → `Incoming` → pipeline → outbox, and `TelegramSender`.

The adapter only translates. A message or button press becomes an `Incoming` for the pipeline
(`bot/pipeline.py`); the replies are written to the outbox for the chat and go out through
`TelegramSender` like every notice, so the per-chat and global rate limits, 429 `retry_after`
and 403 "unreachable" are handled in one place.

What a Telegram user does, and what the pipeline sees:

- `/start b_<building code>` (the grid sign's QR code) → action `bind:<code>`;
- `/start s_<token>` → a staff invite is redeemed (handlers/registry/staff_invites.py);
- `/start` → the binding prompt for a newcomer, the help for someone we know;
- text, including `/status`, `/mine`, `/grid`, `/agenda` … → text (handlers/dispatch.py answers);
- a photo → an attachment with the caption as text: the largest size is downloaded and kept
  (storage.media) before the message is read, or, when that fails, referred to by its file_id;
- a location → a location attachment;
- an inline button → its callback_data as the action (answered at once, so the spinner stops).

Outbox rows for Telegram carry buttons as `[[{"label", "action"}]]`; a reply that asks for text
ends with the row `[{"markup": "force_reply"}]`, which the sender turns into ForceReply.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import anyio
from aiogram import Bot, Router
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.channels.base import Attachment, Incoming, Outgoing, Reply, SendResult
from bot.channels.keep import KEPT_KINDS, MediaUnavailable, keep_media
from bot.pipeline import Pipeline, Prepare
from handlers.errors import InvalidState
from handlers.registry import staff_invites
from handlers.replies import pick_language, say
from storage import media, outbox
from storage import tables as t
from storage.clock import Clock
from storage.log_context import who
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

CHANNEL = "telegram"
# Limits from PROTOCOLS.md §1.1: text length counts UTF-16 code units; callback_data is bytes.
MAX_TEXT = 4096
MAX_CALLBACK_BYTES = 64
FORCE_REPLY = {"markup": "force_reply"}
BIND_PREFIX = "b_"
INVITE_PREFIX = staff_invites.PREFIX
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
# How long getFile and the download may each take. Photos are at most a few MB; a file the Bot
# API will not hand over (getFile refuses anything over 20 MB) fails at once.
DOWNLOAD_SECONDS = 30


# --------------------------------------------------------------------------- translation


@dataclass(frozen=True)
class Translated:
    """What one update asks of griddesk, and which chat hears the answer."""

    chat_id: int
    address: str
    language_hint: str | None = None
    incoming: Incoming | None = None
    invite: str | None = None  # the token of `/start s_<token>`
    plain_start: bool = False  # `/start` without a payload
    unsupported: bool = False  # a sticker, voice note …: answered with what we can read


def translate_message(message: Message) -> Translated | None:
    """A private-chat message as griddesk sees it; None for what is not for us (groups, bots)."""
    user = message.from_user
    if user is None or user.is_bot or message.chat.type != "private":
        return None
    address = str(user.id)
    hint = user.language_code
    base = Translated(chat_id=message.chat.id, address=address, language_hint=hint)

    def incoming(**kwargs: Any) -> Translated:
        return replace(base, incoming=Incoming(CHANNEL, address, language_hint=hint,
                                               display_name=user.full_name, **kwargs))

    text = message.text
    if text is not None:
        first, _, payload = text.strip().partition(" ")
        if first.split("@", 1)[0].lower() == "/start":
            payload = payload.strip()
            if payload.startswith(BIND_PREFIX) and len(payload) > len(BIND_PREFIX):
                return incoming(action=f"bind:{payload[len(BIND_PREFIX):]}")
            if payload.startswith(INVITE_PREFIX) and len(payload) > len(INVITE_PREFIX):
                return replace(base, invite=payload[len(INVITE_PREFIX):])
            return replace(incoming(text="/start"), plain_start=True)
        return incoming(text=text)
    if message.photo:
        largest = message.photo[-1]  # sizes come smallest first (PROTOCOLS.md §1.2)
        return incoming(text=message.caption or "",
                        attachments=(Attachment(kind="photo", ref=largest.file_id),))
    if message.voice is not None:
        # Not transcribed: kept with the case for staff to hear; the desk asks for a sentence.
        return incoming(text=message.caption or "",
                        attachments=(Attachment(kind="voice", ref=message.voice.file_id),))
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        # A picture sent "as a file" (uncompressed): a photo all the same.
        return incoming(text=message.caption or "",
                        attachments=(Attachment(kind="photo", ref=document.file_id),))
    if message.location is not None:
        where = message.location
        return incoming(attachments=(Attachment(kind="location", latitude=where.latitude,
                                                longitude=where.longitude),))
    return replace(base, unsupported=True)


def translate_callback(query: CallbackQuery) -> Translated | None:
    if not query.data or query.from_user.is_bot:
        return None
    chat = query.message.chat if query.message is not None else None
    if chat is not None and chat.type != "private":
        return None
    user = query.from_user
    return Translated(
        chat_id=chat.id if chat is not None else user.id,
        address=str(user.id),
        language_hint=user.language_code,
        incoming=Incoming(CHANNEL, str(user.id), action=query.data, language_hint=user.language_code,
                          display_name=user.full_name),
    )


def outbox_buttons(reply: Reply) -> list[list[dict[str, str]]]:
    """A reply's buttons as outbox rows; a reply that asks for text gets the ForceReply row."""
    rows = [[b.to_json() for b in row] for row in reply.buttons]
    if reply.expects_text and not rows:
        rows.append([dict(FORCE_REPLY)])
    return rows


def reply_markup(rows: Sequence[Sequence[dict[str, str]]]) -> InlineKeyboardMarkup | ForceReply | None:
    """Outbox button rows → Telegram markup. callback_data over 64 bytes cannot be sent, so such a
    button is left out (and logged) rather than failing the whole message."""
    keyboard: list[list[InlineKeyboardButton]] = []
    force = False
    for row in rows:
        buttons = []
        for button in row:
            if button.get("markup") == "force_reply":
                force = True
                continue
            action, label = button.get("action", ""), button.get("label", "")
            if not label or not 1 <= len(action.encode("utf-8")) <= MAX_CALLBACK_BYTES:
                log.error("telegram: button %r left out: callback_data must be 1-64 bytes", action)
                continue
            buttons.append(InlineKeyboardButton(text=label, callback_data=action))
        if buttons:
            keyboard.append(buttons)
    if keyboard:
        return InlineKeyboardMarkup(inline_keyboard=keyboard)
    if force:
        return ForceReply(force_reply=True)
    return None


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Text in parts of at most `limit` UTF-16 units, cut at a line break where one is near."""
    if not text.strip():
        return ["…"]
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        # The longest prefix within the limit, counted in UTF-16 units.
        cut, units = 0, 0
        for i, ch in enumerate(rest):
            units += 2 if ord(ch) > 0xFFFF else 1
            if units > limit:
                break
            cut = i + 1
        newline = rest.rfind("\n", 0, cut)
        if newline > cut // 2:
            cut = newline + 1
        parts.append(rest[:cut].rstrip("\n") or rest[:cut])
        rest = rest[cut:]
    if rest.strip():
        parts.append(rest)
    return parts


def describe(exc: BaseException) -> str:
    """A failed Bot API call in one short line, safe for logs and the outbox's last_error.

    An answer that is not the Bot API's (a proxy's HTML page, JSON cut short) surfaces in aiogram
    as ClientDecodeError, whose text quotes the whole answer, and a truncated sendMessage answer
    holds the message itself: only the kind of failure is kept.
    """
    if isinstance(exc, ClientDecodeError):
        return f"ClientDecodeError: {exc.message} ({type(exc.original).__name__}): not a Bot API answer"
    if isinstance(exc, TelegramAPIError):
        return f"{type(exc).__name__}: {exc.message}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


# --------------------------------------------------------------------------- kept files


def content_type_of(kind: str, file_path: str) -> str:
    """A kept file's type: Telegram re-encodes every photo as JPEG and records voice notes as Ogg
    Opus; a file_path naming another type of the same family wins."""
    family, default = ("audio/", "audio/ogg") if kind == "voice" else ("image/", "image/jpeg")
    guessed = mimetypes.guess_type(file_path)[0] or ""
    return guessed if guessed.startswith(family) else default


async def download_file(bot: Bot, file_id: str, kind: str) -> tuple[bytes, str]:
    """(bytes, content type) of a file the user sent: getFile, then its file URL (on the
    bot's API server). MediaUnavailable when the Bot API refuses it ("file is too big",
    "invalid file_id") or the network fails; MediaRefused when it is larger than we keep."""
    try:
        file = await bot.get_file(file_id, request_timeout=DOWNLOAD_SECONDS)
    except (AiogramError, ValueError) as exc:  # an API error, or an answer that is not the API's
        raise MediaUnavailable(f"getFile: {describe(exc)}") from exc
    if not file.file_path:
        raise MediaUnavailable("getFile gave no file_path")
    if file.file_size is not None and file.file_size > media.MAX_MEDIA_BYTES:
        raise media.MediaRefused(f"the file is {file.file_size} bytes, over MAX_MEDIA_BYTES")
    try:
        buffer = await bot.download_file(file.file_path, timeout=DOWNLOAD_SECONDS)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MediaUnavailable(f"download: {type(exc).__name__}: {exc}") from exc
    if buffer is None:
        raise MediaUnavailable("the download gave no bytes")
    return buffer.read(), content_type_of(kind, file.file_path)


# --------------------------------------------------------------------------- the adapter


class TelegramChannel:
    """Runs one translated update through the pipeline and queues the replies for the chat."""

    def __init__(self, *, engine: Engine, pipeline: Pipeline, clock: Clock,
                 wake: Callable[[], None]) -> None:
        self.engine = engine
        self.pipeline = pipeline
        self.clock = clock
        self.wake = wake

    async def message(self, message: Message, bot: Bot | None = None) -> None:
        translated = translate_message(message)
        if translated is not None:
            await self.handle(translated, bot)

    async def callback(self, query: CallbackQuery, bot: Bot) -> None:
        # Answer first: the button's spinner keeps turning until we do (PROTOCOLS.md §1.2). The
        # press counts whatever the answer: a spinner left turning beats a lost press.
        try:
            await bot.answer_callback_query(query.id)
        except TelegramBadRequest as exc:
            if "query is too old" not in exc.message:
                log.warning("telegram: answering callback %s failed: %s", query.id, exc.message)
        except Exception as exc:  # noqa: BLE001 (5xx, network, an answer that is not the API's)
            log.warning("telegram: answering callback %s failed: %s", query.id, describe(exc))
        translated = translate_callback(query)
        if translated is not None:
            await self.handle(translated)

    async def member(self, event: ChatMemberUpdated) -> None:
        """The user blocked (kicked) or unblocked the bot in their private chat."""
        if event.chat.type != "private":
            return
        blocked = event.new_chat_member.status == "kicked"
        await anyio.to_thread.run_sync(self._set_reachable, str(event.from_user.id), not blocked)

    async def handle(self, translated: Translated, bot: Bot | None = None) -> None:
        if translated.invite is not None:
            await anyio.to_thread.run_sync(self._redeem, translated)
        elif translated.unsupported:
            lang = await anyio.to_thread.run_sync(self._language, translated)
            await anyio.to_thread.run_sync(self._enqueue, translated, [Reply(say(lang, "telegram.unsupported"))])
        else:
            incoming = translated.incoming
            assert incoming is not None
            if translated.plain_start and await anyio.to_thread.run_sync(self._known, translated.address):
                incoming = replace(incoming, text="/help")
            # A newcomer's plain "/start" is not a building code, so the binding dialogue answers
            # it with the committee → building picker. The replies are queued in the pipeline's
            # own transaction, together with the case they answer.
            await self.pipeline.handle(
                incoming, deliver=lambda session, replies, now: self._write(session, translated, replies, now),
                prepare=self._keeper(incoming, bot),
            )
        self.wake()

    def _keeper(self, incoming: Incoming, bot: Bot | None) -> Prepare | None:
        """What keeps the message's photo or voice note, for the pipeline to run under the chat's
        lock before the message is read, so the description sent next finds it kept.

        The pipeline runs it in a worker thread while the Bot's HTTP session belongs to this
        event loop, so the download is run on the loop and awaited from the thread.
        """
        kept = next((a for a in incoming.attachments if a.kind in KEPT_KINDS), None)
        if kept is None or bot is None:
            return None
        file_id, kind = kept.ref, kept.kind
        loop = asyncio.get_running_loop()

        def fetch() -> tuple[bytes, str]:
            future = asyncio.run_coroutine_threadsafe(download_file(bot, file_id, kind), loop)
            try:
                # getFile and the download each have DOWNLOAD_SECONDS; this only guards a stall.
                return future.result(timeout=2 * DOWNLOAD_SECONDS + 5)
            except TimeoutError as exc:
                future.cancel()
                raise MediaUnavailable("the download did not finish in time") from exc

        def prepare(current: Incoming) -> Incoming:
            return keep_media(self.engine, current, file_id, fetch, self.clock.now())

        return prepare

    # ------------------------------------------------------------------ database work (threads)

    def _identity(self, session: Any, address: str) -> t.Identity | None:
        return session.scalars(
            select(t.Identity)
            .where(col(t.Identity.channel) == CHANNEL, col(t.Identity.address) == address)
        ).first()

    def _known(self, address: str) -> bool:
        """Whether the account belongs to staff or to a resident already placed in a building."""
        with UnitOfWork(self.engine) as uow:
            ident = self._identity(uow.session, address)
            if ident is None:
                return False
            if ident.person_id is not None:
                return True
            resident = uow.session.get(t.Resident, ident.resident_id) if ident.resident_id else None
            return resident is not None and resident.building_id is not None

    def _language(self, translated: Translated) -> str:
        with UnitOfWork(self.engine) as uow:
            ident = self._identity(uow.session, translated.address)
            return pick_language(ident.language if ident else None, translated.language_hint)

    def _redeem(self, translated: Translated) -> None:
        assert translated.invite is not None
        now = self.clock.now()
        with UnitOfWork(self.engine) as uow:
            lang = pick_language(translated.language_hint)
            try:
                replies = staff_invites.redeem(uow.session, translated.invite, channel=CHANNEL,
                                               address=translated.address, now=now, lang=lang)
            except InvalidState:  # another chat redeemed it a moment earlier
                uow.rollback()
                replies = [Reply(say(lang, "telegram.invite_used"))]
            except Exception:
                log.exception("telegram: redeeming an invite for %s failed", who(translated.address))
                uow.rollback()
                replies = [Reply(say(lang, "error.generic"))]
            # The binding and the answer commit together.
            self._write(uow.session, translated, replies, now)
            uow.commit()

    def _enqueue(self, translated: Translated, replies: list[Reply]) -> None:
        with UnitOfWork(self.engine) as uow:
            self._write(uow.session, translated, replies, self.clock.now())
            uow.commit()

    def _write(self, session: Any, translated: Translated, replies: list[Reply], now: Any) -> None:
        ident = self._identity(session, translated.address)
        for reply in replies:
            outbox.enqueue(
                session, channel=CHANNEL, address=str(translated.chat_id), text=reply.text, now=now,
                buttons=outbox_buttons(reply),
                identity_id=ident.id if ident else None,
                resident_id=ident.resident_id if ident else None,
                person_id=ident.person_id if ident else None,
                topic="telegram.reply",
            )

    def _set_reachable(self, address: str, reachable: bool) -> None:
        with UnitOfWork(self.engine) as uow:
            ident = self._identity(uow.session, address)
            if ident is None:
                return
            ident.reachable = reachable
            ident.unreachable_reason = "" if reachable else "blocked the bot"
            uow.commit()


def build_router(channel: TelegramChannel) -> Router:
    """The aiogram Router of the channel: every private message, button press and block."""
    router = Router(name="griddesk-telegram")

    @router.message()
    async def on_message(message: Message, bot: Bot) -> None:
        await channel.message(message, bot)

    @router.callback_query()
    async def on_callback(query: CallbackQuery, bot: Bot) -> None:
        await channel.callback(query, bot)

    @router.my_chat_member()
    async def on_member(event: ChatMemberUpdated) -> None:
        await channel.member(event)

    return router


# --------------------------------------------------------------------------- sending


# What sendVoice plays (Bot API): Ogg Opus, MP3 and M4A; other recordings go as files.
VOICE_TYPES = ("audio/ogg", "audio/opus", "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/m4a")


def send_method(content_type: str) -> str | None:
    """How a kept file goes to a chat: a photo as a photo, a recording Telegram plays as a voice
    message, any other recording (WeChat's AMR) as a file; None for anything else."""
    if content_type.startswith("image/"):
        return "photo"
    if content_type in VOICE_TYPES:
        return "voice"
    return "document" if content_type.startswith("audio/") else None


class _Interval:
    """At most `per_second` events per second, spaced evenly (monotonic time)."""

    def __init__(self, per_second: float, now: Callable[[], float]) -> None:
        self.interval = 1.0 / per_second
        self.now = now
        self.next = 0.0

    def wait(self) -> float:
        """How many seconds until the next free slot (0: free now); takes nothing."""
        return max(self.next - self.now(), 0.0)

    def take(self) -> float:
        """0 and the slot is taken, or how many seconds until the next free slot."""
        now = self.now()
        if self.next > now:
            return self.next - now
        self.next = now + self.interval
        return 0.0

    def hold(self, seconds: float) -> None:
        self.next = max(self.next, self.now() + seconds)


class TelegramSender:
    """The outbox's sender for Telegram: rate limits, error mapping, long texts, photos and
    recordings.

    - per chat: at most `per_chat_per_second`; a chat over its budget gets `retry_after`, so the
      outbox postpones that chat alone (not a failure) and others go on;
    - overall: at most `global_per_second`, by waiting for the next free slot;
    - 429 → `retry_after` from Telegram; 403 (blocked, never started) and "chat not found" →
      unreachable, never retried; 5xx, network errors and answers that are not the Bot API's
      (an HTML error page, JSON cut short, a connection reset) → retried with backoff;
    - a notice's kept photos and voice messages (`Outgoing.media`, read from `engine`) go first,
      one message each (`send_method`: sendPhoto, sendVoice, or sendDocument for a recording
      Telegram cannot play, such as WeChat's AMR), under the same limits; a file no longer
      stored, or one Telegram refuses, is left out (and logged) and the text goes on without
      it, so a bad file never holds back a case card;
    - text over 4096 characters is sent as several messages, the buttons on the last;
    - the files and parts already sent are remembered by outbox id, so a retry continues where
      it stopped (a crash between them may repeat the ones sent before it).
    """

    channel = CHANNEL

    def __init__(self, bot: Bot, *, engine: Engine | None = None, per_chat_per_second: float = 1.0,
                 global_per_second: float = 30.0, now: Callable[[], float] = time.monotonic) -> None:
        self.bot = bot
        self.engine = engine
        self.per_chat_per_second = per_chat_per_second
        self.now = now
        self._chats: dict[int, _Interval] = {}
        self._global = _Interval(global_per_second, now)
        self._global_lock = asyncio.Lock()
        self._progress: dict[int, int] = {}

    def _chat(self, chat_id: int) -> _Interval:
        slot = self._chats.get(chat_id)
        if slot is None:
            slot = self._chats[chat_id] = _Interval(self.per_chat_per_second, self.now)
        return slot

    async def _global_slot(self) -> None:
        async with self._global_lock:
            while (wait := self._global.take()) > 0:
                await asyncio.sleep(wait)

    async def send(self, message: Outgoing) -> SendResult:
        try:
            chat_id = int(message.address)
        except ValueError:
            return SendResult(ok=False, unreachable=True, error=f"not a Telegram chat id: {message.address!r}")
        kept = list(message.media)
        parts = split_text(message.text)
        markup = reply_markup(message.buttons)
        # One step per kept file, then one per part of the text; progress counts steps.
        start = self._progress.get(message.id, 0)
        for index in range(start, len(kept) + len(parts)):
            upload = None
            if index < len(kept):
                # A chat over its budget is postponed before its file is read from the database.
                if (wait := self._chat(chat_id).wait()) > 0:
                    self._progress[message.id] = index
                    return SendResult(ok=False, retry_after=wait)
                upload = await self._kept_file(message.id, kept[index])
                if upload is None:
                    continue
            wait = self._chat(chat_id).take()
            if wait > 0:
                self._progress[message.id] = index
                return SendResult(ok=False, retry_after=wait)
            await self._global_slot()
            if upload is not None:
                method, file = upload
                if method == "photo":
                    result = await self._call(self.bot.send_photo(chat_id, file))
                elif method == "voice":
                    result = await self._call(self.bot.send_voice(chat_id, file))
                else:
                    result = await self._call(self.bot.send_document(chat_id, file))
            else:
                part = index - len(kept)
                result = await self._call(self.bot.send_message(
                    chat_id, parts[part], reply_markup=markup if part == len(parts) - 1 else None))
            if not result.ok:
                if result.retry_after is not None:
                    self._chat(chat_id).hold(result.retry_after)
                elif upload is not None and not result.unreachable:
                    log.warning("telegram: media:%s of notice %s left out: %s",
                                kept[index], message.id, result.error)
                    continue
                self._progress[message.id] = index
                if result.unreachable:
                    self._progress.pop(message.id, None)
                return result
        self._progress.pop(message.id, None)
        return SendResult(ok=True)

    async def _kept_file(self, notice_id: int, media_id: int) -> tuple[str, BufferedInputFile] | None:
        """How the kept file goes (`send_method`) and the file as an upload; None (logged) when
        it is gone, cannot be read, or is of a kind a chat cannot show."""
        if self.engine is None:
            return None
        try:
            found = await anyio.to_thread.run_sync(self._read_kept, media_id)
        except Exception:
            log.exception("telegram: reading media:%s of notice %s failed", media_id, notice_id)
            return None
        if found is None:
            log.info("telegram: media:%s of notice %s is no longer kept", media_id, notice_id)
            return None
        data, content_type = found
        method = send_method(content_type)
        if method is None:
            log.info("telegram: media:%s of notice %s (%s) cannot be shown", media_id, notice_id, content_type)
            return None
        extension = mimetypes.guess_extension(content_type) or ""
        return method, BufferedInputFile(data, filename=f"{method}-{media_id}{extension}")

    def _read_kept(self, media_id: int) -> tuple[bytes, str] | None:
        assert self.engine is not None
        with UnitOfWork(self.engine) as uow:
            row = media.get(uow.session, media_id)
            return None if row is None else (bytes(row.data), row.content_type)

    async def _call(self, request: Awaitable[Any]) -> SendResult:
        """One Bot API call's outcome as the outbox reads it."""
        try:
            await request
        except TelegramRetryAfter as exc:
            return SendResult(ok=False, retry_after=float(exc.retry_after))
        except TelegramForbiddenError as exc:
            return SendResult(ok=False, unreachable=True, error=exc.message)
        except (TelegramBadRequest, TelegramNotFound) as exc:
            if "chat not found" in exc.message.lower():
                return SendResult(ok=False, unreachable=True, error=exc.message)
            return SendResult(ok=False, error=exc.message)
        except TelegramAPIError as exc:  # 5xx, network errors, a restarting server
            return SendResult(ok=False, error=describe(exc))
        except Exception as exc:  # noqa: BLE001 (a proxy's HTML page, truncated JSON …: like a 5xx)
            return SendResult(ok=False, error=describe(exc))
        return SendResult(ok=True)
