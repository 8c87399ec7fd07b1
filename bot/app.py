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
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from bot.channels.base import ChannelSender
from bot.channels.webchat import WebChatSender
from bot.metrics import ChannelWatch
from bot.pipeline import Pipeline
from bot.sender import OutboxSender
from bot.settings import EXAMPLE_REGISTRY, Settings
from bot.web.access_log import redact
from bot.worker import Scheduler, policy_from
from handlers.council import export
from handlers.desk import Classifier
from handlers.registry.loader import load_registry
from storage import db
from storage import tables as t
from storage.clock import Clock, SystemClock
from storage.state import MemoryStateStore, RedisStateStore, StateStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 512 * 1024
STATIC_VENDOR = Path(__file__).parent / "web" / "static" / "vendor"


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


def is_embedded_default(settings: Settings) -> bool:
    """Whether the database is the embedded default (no DATABASE_URL: the SQLite file under var/)."""
    return settings.database_url == Settings.model_fields["database_url"].default


def open_database(settings: Settings, clock: Clock | None = None) -> Engine:
    """The database a command works on, opened once per command: migrated and, on the embedded
    default, with the example community (or REGISTRY_FILE) loaded as `serve` loads it, so that
    any command works on a fresh clone. A configured database is only migrated: what it holds
    is for `griddesk registry load` to decide, and the log says so when it holds nothing."""
    engine = db.make_engine(settings.database_url)
    if is_embedded_default(settings):
        prepare_database(settings, engine, clock or SystemClock())
        return engine
    db.upgrade(settings.database_url)
    with UnitOfWork(engine) as uow:
        if not uow.session.scalar(select(func.count()).select_from(t.Community)):
            log.warning("no community in the database yet: run `griddesk registry load FILE` first")
    return engine


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

    embedded = nlu.load(settings.nlu_model_dir, gazetteer=gazetteer(engine))
    if settings.nlu_backend == "rasa":
        # The embedded model checks Rasa's kind and reads the message when Rasa cannot.
        rasa = nlu.RasaClassifier(settings.rasa_url, settings.rasa_timeout,
                                  token=settings.rasa_token, embedded=embedded)
        rasa.start_warm_up()  # Rasa's first parse is slow; in the background, start goes on
        return rasa
    return embedded


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


def build_wecom_sender(settings: Settings, engine: Engine, state: StateStore, clock: Clock) -> ChannelSender | None:
    """The WeCom app sender, when WECOM_CORP_ID, WECOM_AGENT_ID and WECOM_SECRET are set; the
    people with a WeCom member id get their WeCom chat identity then."""
    from bot.channels import wecom

    client = wecom.build_client(settings, now=lambda: clock.now().timestamp())
    if client is None or settings.wecom_agent_id is None:
        return None
    wecom.bind_members(engine, clock.now())
    return wecom.WeComSender(client, agent_id=settings.wecom_agent_id, state=state, engine=engine,
                             limits=wecom.MemberLimits(state, now=lambda: clock.now().timestamp()))


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
    wecom = build_wecom_sender(settings, engine, state, clock)
    if wecom is not None:
        senders["wecom"] = wecom
    # The council's /export answers with a link to the console's download on this site.
    export.set_site_url(settings.public_url)
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
        policy=policy_from(settings),
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
        # The picker signs anyone in as anyone: never in production, example community or not.
        demo=settings.environment != "production" and (settings.demo if settings.demo is not None else example),
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
    # This process's channel state for /metrics (bot/metrics.py).
    services.background.append(ChannelWatch(services).run)
    return services


def build_app(services: Services, *, run_background: bool = True) -> FastAPI:
    from bot.web import figures, health, media, photos, telegram, webchat, wechat, wecom
    from bot.web import metrics as metrics_view
    from bot.web.deps import RETRY_AFTER_SECONDS, STATE_DOWN
    from bot.web.guard import AnswerErrors, BodyLimit
    from bot.web.request_id import RequestId

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

    # Starlette wraps each middleware added around the ones before it: every body is counted as
    # it arrives, and an error is answered with the connection kept (bot/web/guard.py).
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(AnswerErrors)
    # Added last, so outermost: every line a request causes carries its id (bot/web/request_id.py).
    app.add_middleware(RequestId)

    async def state_down(request: Request, exc: Exception) -> JSONResponse:
        # Redis is down: a clean 503 that says when to try again, one line in the log.
        log.warning("%s %s: the state store is unreachable (%s)", request.method, redact(request.url.path),
                    type(exc).__name__)
        return JSONResponse({"detail": "the service is briefly unavailable; try again in a moment"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    for kind in STATE_DOWN:
        app.add_exception_handler(kind, state_down)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # What was wrong and where, without echoing the input: it may be large, or text that
        # cannot even be encoded (a lone surrogate).
        return JSONResponse({"detail": [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")}
                                        for e in exc.errors()]}, status_code=422)

    app.include_router(health.router)
    app.include_router(webchat.router)
    app.include_router(media.router)
    app.include_router(figures.router)
    app.include_router(photos.router)
    app.include_router(wechat.router)
    app.include_router(wecom.router)
    app.include_router(telegram.router)
    app.include_router(metrics_view.router)
    from fastapi.staticfiles import StaticFiles

    from bot.web.console import router as console_router

    app.include_router(console_router)
    # Vendored scripts (htmx, ECharts) are served by us, never from a CDN.
    app.mount("/static/vendor", StaticFiles(directory=STATIC_VENDOR), name="vendor")
    return app

