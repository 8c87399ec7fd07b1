"""The composition root: the only place that builds engines, stores, clients and senders.

    services = build_services(Settings())
    app = build_app(services)          # FastAPI, with the sender loop in its lifespan
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.channels.base import ChannelSender
from bot.channels.webchat import WebChatSender
from bot.pipeline import Pipeline
from bot.sender import OutboxSender
from bot.settings import EXAMPLE_REGISTRY, Settings
from bot.worker import Scheduler, policy_from
from handlers.desk import Classifier
from handlers.registry import load_registry
from storage import db
from storage import tables as t
from storage.clock import Clock, SystemClock
from storage.state import MemoryStateStore, RedisStateStore, StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 512 * 1024


@dataclass
class Services:
    settings: Settings
    engine: Engine
    state: StateStore
    classifier: Classifier
    clock: Clock
    pipeline: Pipeline
    sender: OutboxSender
    senders: dict[str, ChannelSender]
    demo: bool = False
    background: list[Callable[[asyncio.Event], Any]] = field(default_factory=list)
    telegram: Any = None  # bot.telegram_runtime.TelegramRuntime when TELEGRAM_BOT_TOKEN is set


def prepare_database(settings: Settings, engine: Engine, clock: Clock) -> bool:
    """Migrate, and load a registry: the configured one, or the example into an empty database.

    Returns whether the example community is what is loaded (it turns the demo picker on).
    """
    db.upgrade(settings.database_url)
    with UnitOfWork(engine) as uow:
        empty = uow.session.scalar(select(func.count()).select_from(t.Community)) == 0
        path = settings.registry_file or (EXAMPLE_REGISTRY if empty else None)
        if path is not None:
            summary = load_registry(uow.session, path, clock.now())
            uow.commit()
            log.info("%s", summary.describe())
        example_hash = (
            hashlib.sha256(EXAMPLE_REGISTRY.read_bytes()).hexdigest() if EXAMPLE_REGISTRY.exists() else ""
        )
        return bool(
            uow.session.scalar(
                select(func.count())
                .select_from(t.Community)
                .where(col(t.Community.registry_hash) == example_hash)
            )
        )


def gazetteer(engine: Engine) -> dict[str, dict[str, str]]:
    """Buildings and grids by name and code, for the NLU's entity extraction."""
    with UnitOfWork(engine) as uow:
        buildings = {}
        for b in uow.session.scalars(select(t.Building).where(col(t.Building.active).is_(True))):
            buildings[b.name] = b.code
            buildings[b.code] = b.code
        grids = {}
        for g in uow.session.scalars(select(t.Grid).where(col(t.Grid.active).is_(True))):
            grids[g.name] = g.code
            grids[g.code] = g.code
    return {"building": buildings, "grid": grids}


def build_classifier(settings: Settings, engine: Engine) -> Classifier:
    import nlu

    if settings.nlu_backend == "rasa":
        return nlu.RasaClassifier(settings.rasa_url)
    return nlu.load(settings.nlu_model_dir, gazetteer=gazetteer(engine))


def build_state(settings: Settings) -> StateStore:
    return RedisStateStore(settings.redis_url) if settings.redis_url else MemoryStateStore()


def build_wechat_sender(settings: Settings, engine: Engine, state: StateStore, clock: Clock) -> ChannelSender | None:
    """The WeChat Official Account sender, when WECHAT_APPID and WECHAT_SECRET are set."""
    from bot.channels import wechat

    client = wechat.build_client(settings, now=lambda: clock.now().timestamp())
    if client is None:
        return None
    from bot.web.photos import photo_link

    return wechat.WeChatSender(
        client,
        state=state,
        engine=engine,
        photo_link=lambda ids: photo_link(settings, ids),
        template_id=settings.wechat_template_notice,
        template_fields=[f.strip() for f in settings.wechat_template_fields.split(",") if f.strip()],
        hold_seconds=settings.wechat_hold_seconds,
    )


def build_telegram(settings: Settings, engine: Engine, state: StateStore, pipeline: Pipeline, clock: Clock,
                   wake: Callable[[], None]) -> Any:
    """The Telegram channel (bot, dispatcher, inbox, sender), when TELEGRAM_BOT_TOKEN is set."""
    if not settings.telegram_bot_token:
        return None
    from bot.telegram_runtime import TelegramRuntime

    return TelegramRuntime.build(settings, engine=engine, state=state, pipeline=pipeline, clock=clock,
                                 wake=wake)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    classifier: Classifier | None = None,
    state: StateStore | None = None,
    prepare: bool = True,
) -> Services:
    clock = clock or SystemClock()
    engine = db.make_engine(settings.database_url)
    example = prepare_database(settings, engine, clock) if prepare else False
    state = state or build_state(settings)
    classifier = classifier or build_classifier(settings, engine)
    senders: dict[str, ChannelSender] = {"web": WebChatSender()}
    wechat = build_wechat_sender(settings, engine, state, clock)
    if wechat is not None:
        senders["wechat"] = wechat
    pipeline = Pipeline(
        engine,
        state=state,
        classifier=classifier,
        clock=clock,
        clarify_below=settings.clarify_below,
        max_text=settings.max_message_chars,
    )
    # The sender is built next; replies queued by the channel wake it.
    telegram = build_telegram(settings, engine, state, pipeline, clock, wake=lambda: sender.wake())
    if telegram is not None:
        senders["telegram"] = telegram.sender
    sender = OutboxSender(
        engine,
        senders,
        clock,
        batch=settings.send_batch,
        max_attempts=settings.send_max_attempts,
        idle_seconds=settings.send_idle_seconds,
        lease_seconds=settings.send_lease_seconds,
    )
    services = Services(
        settings=settings,
        engine=engine,
        state=state,
        classifier=classifier,
        clock=clock,
        pipeline=pipeline,
        sender=sender,
        senders=senders,
        demo=settings.demo if settings.demo is not None else example,
        telegram=telegram,
    )
    if telegram is not None:
        # Webhook setup or long polling, and the recovery of stored updates.
        services.background.append(telegram.run)
    # The deadline watch: reminders, escalations, follow-ups and digests (bot/worker.py).
    services.background.append(
        Scheduler(engine, clock, policy_from(settings), tick_seconds=settings.watch_tick_seconds,
                  batch=settings.watch_batch, on_queued=sender.wake,
                  chat_history_days=settings.chat_history_days).run
    )
    return services


def build_app(services: Services, *, run_background: bool = True) -> FastAPI:
    from bot.web import figures, health, media, photos, telegram, webchat, wechat

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks = []
        if run_background:
            tasks.append(asyncio.create_task(services.sender.run(stop)))
            tasks += [asyncio.create_task(job(stop)) for job in services.background]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=5)

    app = FastAPI(title="griddesk", lifespan=lifespan)
    app.state.services = services

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    app.include_router(health.router)
    app.include_router(webchat.router)
    app.include_router(media.router)
    app.include_router(figures.router)
    app.include_router(photos.router)
    app.include_router(wechat.router)
    app.include_router(telegram.router)
    return app

