"""The Telegram runtime against a broken Bot API server: answers that are not the Bot API's (a
proxy's HTML page, JSON cut short, a connection closed mid-body, a method the server lacks, a
long poll answered at once). The channel keeps receiving, and says so in the log only when its
state changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import Services, build_services
from bot.settings import Settings
from bot.telegram_runtime import POLL_MIN_INTERVAL, TelegramRuntime
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.telegram_bot_api import FakeTelegram

pytestmark = pytest.mark.slow

TOKEN = "123456:TEST"
USER = 1001


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN]) as fake:
        yield fake


@pytest.fixture
def fake(served: FakeTelegram) -> FakeTelegram:
    served.reset()
    served.user(USER, "王芳")
    return served


def build(fake: FakeTelegram, database_url: str, clock: FixedClock, **settings: Any) -> Services:
    return build_services(
        Settings(database_url=database_url, secret_key="test", telegram_bot_token=TOKEN,
                 telegram_api_base=fake.url, telegram_poll_timeout=1, **settings),
        clock=clock, classifier=KeywordClassifier(), state=MemoryStateStore())


@pytest.fixture
def services(fake: FakeTelegram, sqlite_url: str, clock: FixedClock) -> Iterator[Services]:
    built = build(fake, sqlite_url, clock)
    yield built
    built.engine.dispose()


@contextlib.asynccontextmanager
async def running(runtime: TelegramRuntime) -> AsyncIterator[asyncio.Task[None]]:
    """The runtime's background job, as `griddesk serve` runs it, stopped at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


def stored(services: Services) -> int:
    with UnitOfWork(services.engine) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(t.Inbound)) or 0)


def warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and needle in r.getMessage()]


async def test_a_server_without_set_my_commands_still_gets_polled(
        services: Services, fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    # A Bot API server that lacks the method answers 404 with a web server's HTML page.
    fake.fail_next(None, method="setMyCommands", fault="html", error_code=404)
    runtime = services.telegram

    async with running(runtime) as task:
        await fake.wait_for(fake.polling)
        fake.start_bot(USER, "b_ZN-B01")
        await fake.wait_for(lambda: stored(services) == 1)
        assert not task.done()

    assert fake.requests("setMyCommands") == 1  # cosmetic: tried once, not retried
    [warning] = warnings(caplog, "setMyCommands")
    assert "going on without it" in warning and "<html>" not in warning


async def test_the_poller_outlives_any_broken_answer_and_logs_only_the_changes(
        services: Services, fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    runtime = services.telegram
    runtime.receiving.first = runtime.receiving.cap = 0.01
    for fault in ({"fault": "html"}, {"fault": "html", "error_code": 404}, {"fault": "truncated"},
                  {"fault": "reset"}, {"drop": True}, {"error_code": 502}):
        fake.fail_next(method="getUpdates", **fault)
    fake.start_bot(USER, "b_ZN-B01")

    async with running(runtime):
        await fake.wait_for(lambda: stored(services) == 1, timeout=10)

    assert fake.requests("getUpdates") >= 7
    assert len(warnings(caplog, "telegram getUpdates: failing")) == 1
    assert len(warnings(caplog, "telegram getUpdates: working again after 6 failed call(s)")) == 1
    assert runtime.receiving.last_ok_at is not None and runtime.receiving.failing_since is None


async def test_a_server_that_ignores_the_long_poll_timeout_is_asked_a_few_times_a_second(
        services: Services, fake: FakeTelegram) -> None:
    fake.fail_next(None, method="getUpdates", fault="instant")
    runtime = services.telegram
    loop = asyncio.get_running_loop()

    async with running(runtime):
        await fake.wait_for(lambda: fake.requests("getUpdates") >= 1)
        began, before = loop.time(), fake.requests("getUpdates")
        await asyncio.sleep(1.5)
        asked = fake.requests("getUpdates") - before
        elapsed = loop.time() - began

    # At most one getUpdates per POLL_MIN_INTERVAL (4 a second), one more for the edges.
    assert asked <= elapsed / POLL_MIN_INTERVAL + 1


async def test_set_webhook_is_retried_until_the_server_takes_it(
        fake: FakeTelegram, sqlite_url: str, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    hook = "http://127.0.0.1:9/telegram/webhook"
    services = build(fake, sqlite_url, clock, telegram_webhook_url=hook, telegram_webhook_secret="s3cret")
    runtime = services.telegram
    runtime.receiving.first = runtime.receiving.cap = 0.01
    fake.fail_next(1, method="setWebhook", fault="html")
    fake.fail_next(1, method="setWebhook", fault="html", error_code=404)
    fake.fail_next(1, method="setWebhook", drop=True)
    try:
        async with running(runtime) as task:
            await fake.wait_for(lambda: runtime.receiving.last_ok_at is not None)
            assert not task.done()
            assert fake.webhook_info()["url"] == hook
    finally:
        services.engine.dispose()

    assert fake.requests("setWebhook") == 4
    assert len(warnings(caplog, "telegram setWebhook: failing")) == 1
    assert runtime.receiving.last_ok_at == clock.now()


async def test_a_button_press_counts_when_answering_it_gets_an_html_page(
        services: Services, fake: FakeTelegram) -> None:
    runtime = services.telegram
    try:
        assert await runtime.accept(fake.start_bot(USER))
        await runtime.idle()
        await services.sender.drain()
        [picker] = fake.sent(USER)
        data = picker.reply_markup["inline_keyboard"][0][0]["callback_data"] if picker.reply_markup else ""
        fake.fail_next(method="answerCallbackQuery", fault="html")

        assert await runtime.accept(fake.inject_callback_query(USER, picker.message_id, data))
        await runtime.idle()

        with UnitOfWork(services.engine) as uow:
            states = list(uow.session.scalars(select(t.Inbound.state).order_by(t.Inbound.id)))
            answers = list(uow.session.scalars(select(t.Outbox.text).where(t.Outbox.address == str(USER))))
        assert states == ["done", "done"]
        assert len(answers) == 2  # the press was read, and its answer is on its way to the chat
    finally:
        await runtime.dispatcher.storage.close()
        await runtime.bot.session.close()
