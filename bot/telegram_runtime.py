"""The running Telegram channel: Bot, Dispatcher, the durable inbox and the polling loop.

    runtime = TelegramRuntime.build(settings, engine=..., state=..., pipeline=..., clock=..., wake=...)
    services.senders["telegram"] = runtime.sender
    services.background.append(runtime.run)      # webhook setup or long polling, and recovery

Every update, from the webhook or from getUpdates, takes one path:

1. `accept`: dedupe on `update_id` (the shared StateStore when Redis is configured, and always
   the UNIQUE (channel, key) of the `Inbound` table), store the raw update, return at once: the
   webhook answers 200 before any handler runs, so a failing handler never makes Telegram
   redeliver and freeze the chat (PROTOCOLS.md §0 trap 1).
2. A worker per chat feeds the chat's stored updates to the aiogram Dispatcher one at a time, in
   order, marking each `done` or `failed` (with the error). Nothing a handler raises escapes.
3. On start, stored updates never begun (`received`) are processed; updates a crash interrupted
   mid-way (`working`) are marked failed rather than run again, because their case may already
   exist: a redelivered update must not do anything twice.

The runtime outlives any answer from the Bot API server, including ones that are not the Bot
API's (a proxy's HTML 500, JSON cut short, a reset connection, a server without a method):

- start-up: setMyCommands is cosmetic, so a failure is a WARNING and is not retried;
  deleteWebhook is tried once before polling and again whenever getUpdates meets a webhook (409);
  setWebhook is retried with backoff until it succeeds, while stored updates are still swept;
- polling: a failed getUpdates waits 1 s, doubling up to 30 s (`receiving`), logged when it starts
  failing and when it works again; consecutive getUpdates calls start at least
  POLL_MIN_INTERVAL apart, so a server that ignores the long-poll `timeout` and answers at once
  is asked at most a few times a second.

`receiving` records the last successful getUpdates (or setWebhook) and `loop` whether `run`
still runs; /health reads both.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramConflictError, TelegramRetryAfter
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import BotCommand, BotCommandScopeDefault
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from bot.channels.base import CallRecord, LoopState
from bot.channels.telegram import (
    ALLOWED_UPDATES,
    CHANNEL,
    TelegramChannel,
    TelegramSender,
    build_router,
    describe,
)
from bot.pipeline import Pipeline
from bot.settings import Settings
from handlers.replies import say
from storage import tables as t
from storage.clock import Clock
from storage.log_context import log_context
from storage.state import StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
T = TypeVar("T")

DEDUPE_TTL = 24 * 3600  # Telegram keeps an update at most 24 h (PROTOCOLS.md §1.1)
# update_id restarts at a random value after a week without updates; finished rows older than
# this are pruned so a restarted sequence cannot collide with them.
KEEP_DONE = dt.timedelta(days=3)
SWEEP_SECONDS = 30.0
# A `working` row older than this at start belongs to a process that died.
INTERRUPTED_AFTER = dt.timedelta(minutes=5)
# At most this often a getUpdates starts (≤ 4 a second), whatever the server answers.
POLL_MIN_INTERVAL = 0.25
COMMANDS = (("start", "telegram.cmd_start"), ("status", "telegram.cmd_status"),
            ("grid", "telegram.cmd_grid"), ("help", "telegram.cmd_help"))


class _Stop(Exception):
    """The runtime is stopping while it waited for Telegram."""


def build_bot(settings: Settings) -> Bot:
    """An aiogram Bot; TELEGRAM_API_BASE points it at a custom Bot API server."""
    assert settings.telegram_bot_token
    session = (AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
               if settings.telegram_api_base else AiohttpSession())
    return Bot(settings.telegram_bot_token, session=session)


def build_storage(settings: Settings) -> BaseStorage:
    """FSM storage: Redis (shared by every process) when REDIS_URL is set, else in memory."""
    if settings.redis_url:
        return RedisStorage.from_url(settings.redis_url,
                                     key_builder=DefaultKeyBuilder(prefix="griddesk:fsm", with_bot_id=True))
    return MemoryStorage()


def chat_key(payload: dict[str, Any]) -> str:
    """The chat an update belongs to (updates of one chat are handled in order)."""
    for kind in ("message", "edited_message", "my_chat_member"):
        obj = payload.get(kind)
        if isinstance(obj, dict) and isinstance(obj.get("chat"), dict):
            return str(obj["chat"].get("id"))
    query = payload.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return str(message["chat"].get("id"))
        if isinstance(query.get("from"), dict):
            return str(query["from"].get("id"))
    return f"update:{payload.get('update_id')}"


class TelegramRuntime:
    def __init__(self, settings: Settings, *, bot: Bot, dispatcher: Dispatcher, sender: TelegramSender,
                 engine: Engine, state: StateStore, clock: Clock, shared_dedupe: bool) -> None:
        self.settings = settings
        self.bot = bot
        self.dispatcher = dispatcher
        self.sender = sender
        self.engine = engine
        self.state = state
        self.clock = clock
        self.shared_dedupe = shared_dedupe
        self._queues: dict[str, deque[int]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._queued: set[int] = set()
        self.loop = LoopState()
        # getUpdates in polling mode, setWebhook in webhook mode; tests shorten the backoff.
        self.receiving = CallRecord("telegram getUpdates" if self.polls else "telegram setWebhook")

    @classmethod
    def build(cls, settings: Settings, *, engine: Engine, state: StateStore, pipeline: Pipeline,
              clock: Clock, wake: Callable[[], None]) -> TelegramRuntime:
        bot = build_bot(settings)
        storage = build_storage(settings)
        # One user's updates one at a time, across processes when the storage is Redis
        # (PROTOCOLS.md §0 trap 4).
        isolation = storage.create_isolation() if isinstance(storage, RedisStorage) else None
        dispatcher = Dispatcher(storage=storage, events_isolation=isolation)
        channel = TelegramChannel(engine=engine, pipeline=pipeline, clock=clock, wake=wake)
        dispatcher.include_router(build_router(channel))
        sender = TelegramSender(bot, engine=engine, per_chat_per_second=settings.telegram_per_chat_per_second,
                                global_per_second=settings.telegram_global_per_second)
        return cls(settings, bot=bot, dispatcher=dispatcher, sender=sender, engine=engine, state=state,
                   clock=clock, shared_dedupe=bool(settings.redis_url))

    @property
    def webhook_mode(self) -> bool:
        return bool(self.settings.telegram_webhook_url)

    @property
    def polls(self) -> bool:
        """Whether this process runs the getUpdates loop."""
        return not self.webhook_mode and self.settings.telegram_poll

    @property
    def mode(self) -> str:
        return "webhook" if self.webhook_mode else "polling" if self.polls else "not polling here"

    # ------------------------------------------------------------------ the durable inbox

    async def accept(self, payload: dict[str, Any]) -> bool:
        """Store a new update and schedule it; False for one already seen (nothing happens)."""
        inbound_id = await anyio.to_thread.run_sync(self._store, payload)
        if inbound_id is None:
            return False
        self.schedule(chat_key(payload), inbound_id)
        return True

    def _store(self, payload: dict[str, Any]) -> int | None:
        update_id = payload["update_id"]
        dedupe = f"tg:{self.bot.id}:{update_id}"
        if self.shared_dedupe and not self.state.first_time(dedupe, DEDUPE_TTL):
            return None
        try:
            with UnitOfWork(self.engine) as uow:
                row = t.Inbound(channel=CHANNEL, key=str(update_id), payload=payload,
                                received_at=self.clock.now())
                uow.session.add(row)
                uow.session.flush()
                inbound_id = row.id
                uow.commit()
        except IntegrityError:
            return None
        except Exception:
            if self.shared_dedupe:  # not stored: let Telegram's retry through
                self.state.pop(dedupe)
            raise
        return inbound_id

    def schedule(self, key: str, inbound_id: int) -> None:
        if inbound_id in self._queued:
            return
        self._queued.add(inbound_id)
        self._queues.setdefault(key, deque()).append(inbound_id)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._drain_chat(key))

    async def _drain_chat(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                inbound_id = queue.popleft()
                try:
                    # The stored update's own id: this queue outlives the request that started it.
                    with log_context(request_id=f"telegram-inbound-{inbound_id}"):
                        await self._process(inbound_id)
                finally:
                    self._queued.discard(inbound_id)
        finally:
            del self._workers[key]
            if not queue:
                self._queues.pop(key, None)

    async def _process(self, inbound_id: int) -> None:
        payload = await anyio.to_thread.run_sync(self._claim, inbound_id)
        if payload is None:
            return
        error = ""
        try:
            await self.dispatcher.feed_raw_update(self.bot, payload)
        except Exception as exc:  # a poison update is dead-lettered, never retried by Telegram
            log.exception("telegram: update %s failed", payload.get("update_id"))
            error = f"{type(exc).__name__}: {exc}"[:500]
        try:
            await anyio.to_thread.run_sync(self._finish, inbound_id, error)
        except Exception:
            log.exception("telegram: could not mark update row %s", inbound_id)

    def _claim(self, inbound_id: int) -> dict[str, Any] | None:
        """The update's payload if this worker moved it from received to working, else None."""
        with UnitOfWork(self.engine) as uow:
            taken = uow.session.execute(
                update(t.Inbound)
                .where(col(t.Inbound.id) == inbound_id, col(t.Inbound.state) == "received")
                .values(state="working")
                .execution_options(synchronize_session=False)
            )
            if getattr(taken, "rowcount", 0) != 1:
                return None
            row = uow.session.get(t.Inbound, inbound_id)
            uow.commit()
            return dict(row.payload) if row is not None else None

    def _finish(self, inbound_id: int, error: str) -> None:
        with UnitOfWork(self.engine) as uow:
            row = uow.session.get(t.Inbound, inbound_id)
            if row is not None:
                row.state = "failed" if error else "done"
                row.error = error
                row.done_at = self.clock.now()
                uow.commit()

    def _pending(self, older_than: dt.timedelta | None) -> list[tuple[int, str]]:
        with UnitOfWork(self.engine) as uow:
            stmt = select(t.Inbound).where(col(t.Inbound.channel) == CHANNEL,
                                           col(t.Inbound.state) == "received")
            if older_than is not None:
                stmt = stmt.where(col(t.Inbound.received_at) < self.clock.now() - older_than)
            rows = uow.session.scalars(stmt.order_by(col(t.Inbound.id)))
            return [(r.id or 0, chat_key(r.payload)) for r in rows]

    def _tidy(self, *, interrupted: bool) -> None:
        now = self.clock.now()
        with UnitOfWork(self.engine) as uow:
            if interrupted:
                uow.session.execute(
                    update(t.Inbound)
                    .where(col(t.Inbound.channel) == CHANNEL, col(t.Inbound.state) == "working",
                           col(t.Inbound.received_at) < now - INTERRUPTED_AFTER)
                    .values(state="failed", error="interrupted while being handled; not run again",
                            done_at=now)
                    .execution_options(synchronize_session=False)
                )
            uow.session.execute(
                delete(t.Inbound)
                .where(col(t.Inbound.channel) == CHANNEL, col(t.Inbound.state) == "done",
                       col(t.Inbound.received_at) < now - KEEP_DONE)
                .execution_options(synchronize_session=False)
            )
            uow.commit()

    async def recover(self, older_than: dt.timedelta | None = None) -> int:
        """Schedule stored updates nobody has begun; returns how many."""
        pending = await anyio.to_thread.run_sync(self._pending, older_than)
        for inbound_id, key in pending:
            self.schedule(key, inbound_id)
        return len(pending)

    async def idle(self) -> None:
        """Wait until every scheduled update has been handled (tests, shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """The background job of `griddesk serve`: set up, recover, then poll or wait for stop."""
        self.loop.started()
        try:
            await self._optional("startup handlers", self.dispatcher.emit_startup(bot=self.bot))
            await self._optional("setMyCommands", self._set_commands())
            with contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(lambda: self._tidy(interrupted=True))
            await self._recover_logged(None)
            if self.webhook_mode:
                await asyncio.gather(self._set_webhook(stop), self._sweep(stop))
            elif self.polls:
                await self._poll(stop)
            else:
                await self._sweep(stop)
        except Exception:  # a bug: said at once, and /health answers 503 from now on
            log.exception("telegram: the channel's runtime stopped")
        finally:
            self.loop.ended(asked=stop.is_set())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.idle(), timeout=3)
            for task in list(self._workers.values()):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.dispatcher.emit_shutdown(bot=self.bot)
            with contextlib.suppress(Exception):
                await self.dispatcher.storage.close()
            with contextlib.suppress(Exception):
                await self.bot.session.close()

    async def _recover_logged(self, older_than: dt.timedelta | None) -> None:
        try:
            found = await self.recover(older_than)
        except Exception:
            log.exception("telegram: looking for stored updates failed")
            return
        if found:
            log.info("telegram: %d stored update(s) scheduled", found)

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Without a poller here: now and then pick up stored updates no worker has begun."""
        while not await _stopped(stop, SWEEP_SECONDS):
            await self._recover_logged(dt.timedelta(seconds=SWEEP_SECONDS))
            with contextlib.suppress(Exception):
                await anyio.to_thread.run_sync(lambda: self._tidy(interrupted=False))

    async def _set_webhook(self, stop: asyncio.Event) -> None:
        """setWebhook until it succeeds: without it Telegram delivers nothing."""
        while not stop.is_set():
            try:
                await _until(stop, self.bot.set_webhook(
                    str(self.settings.telegram_webhook_url), secret_token=self.settings.telegram_webhook_secret,
                    allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False))
            except _Stop:
                return
            except Exception as exc:  # noqa: BLE001 (any answer at all: retried)
                if await _stopped(stop, self.receiving.failed(self.clock.now(), describe(exc))):
                    return
            else:
                self.receiving.succeeded(self.clock.now())
                return

    async def _poll(self, stop: asyncio.Event) -> None:
        """Long polling: one getUpdates loop; an update is stored before its offset is confirmed."""
        await self._delete_webhook()
        offset: int | None = None
        loop = asyncio.get_running_loop()
        began = -POLL_MIN_INTERVAL
        while not stop.is_set():
            # The floor holds even when the server answers at once, ignoring `timeout`.
            if await _stopped(stop, began + POLL_MIN_INTERVAL - loop.time()):
                return
            began = loop.time()
            try:
                updates = await _until(stop, self.bot.get_updates(
                    offset=offset, timeout=self.settings.telegram_poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                    request_timeout=self.settings.telegram_poll_timeout + 10))
            except _Stop:
                return
            except Exception as exc:  # noqa: BLE001  (the one poller must outlive any answer)
                pause = self.receiving.failed(self.clock.now(), describe(exc))
                if isinstance(exc, TelegramRetryAfter):
                    pause = max(pause, float(exc.retry_after))
                elif isinstance(exc, TelegramConflictError) and "webhook" in exc.message:
                    # A webhook is set (our deleteWebhook failed, or someone set one).
                    await self._delete_webhook()
                # A conflict with another poller: only one may run (PROTOCOLS.md §1.1).
                await _stopped(stop, pause)
                continue
            self.receiving.succeeded(self.clock.now())
            for item in updates:
                payload = item.model_dump(mode="json", by_alias=True, exclude_none=True)
                try:
                    await self.accept(payload)
                except Exception:
                    log.exception("telegram: storing update %s failed", item.update_id)
                    break  # not stored: ask for it again
                offset = item.update_id + 1

    async def _delete_webhook(self) -> None:
        await self._optional("deleteWebhook", self.bot.delete_webhook(drop_pending_updates=False))

    async def _set_commands(self) -> None:
        for lang, code in (("zh-Hans", None), ("en", "en")):
            commands = [BotCommand(command=name, description=say(lang, key)) for name, key in COMMANDS]
            await self.bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=code)

    async def _optional(self, what: str, call: Awaitable[Any]) -> None:
        """A step the channel works without (or retries elsewhere): any failure is a WARNING."""
        try:
            await call
        except Exception as exc:  # noqa: BLE001 (any answer, including one that is not the API's)
            log.warning("telegram: %s failed, going on without it: %s", what, describe(exc))


async def _until(stop: asyncio.Event, call: Awaitable[T]) -> T:
    """Await `call`, or raise _Stop as soon as `stop` is set (the call is cancelled)."""
    task = asyncio.ensure_future(call)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise _Stop
    return task.result()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set."""
    if seconds <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
