"""The Telegram runtime's inbox: dedupe on update_id and per-user isolation, in memory and in Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiogram.fsm.storage.memory import MemoryStorage
from sqlalchemy import func, select

from bot.app import Services, build_services
from bot.settings import Settings
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore, RedisStateStore, StateStore
from storage.unit_of_work import UnitOfWork
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.telegram_bot_api import FakeTelegram

TOKEN = "123456:TEST"
USER = 1001


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN]) as served:
        yield served


@pytest.fixture(params=["memory", "redis"])
def shared_state(request: pytest.FixtureRequest, redis_prefix: str) -> tuple[str | None, StateStore]:
    if request.param == "memory":
        return None, MemoryStateStore()
    url = request.getfixturevalue("redis_url")
    return url, RedisStateStore(url, prefix=redis_prefix)


@pytest.fixture
def services(fake: FakeTelegram, sqlite_url: str, clock: FixedClock,
             shared_state: tuple[str | None, StateStore]) -> Iterator[Services]:
    fake.reset()
    fake.user(USER, "王芳")
    redis_url, state = shared_state
    settings = Settings(database_url=sqlite_url, secret_key="test", redis_url=redis_url,
                        telegram_bot_token=TOKEN, telegram_api_base=fake.url)
    built = build_services(settings, clock=clock, classifier=KeywordClassifier(), state=state)
    yield built
    built.engine.dispose()


def count(services: Services, table: type, *where: object) -> int:
    with UnitOfWork(services.engine) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def test_an_update_is_handled_once_however_often_it_arrives(services: Services, fake: FakeTelegram) -> None:
    runtime = services.telegram
    try:
        update = fake.start_bot(USER, "b_ZN-B01")
        assert await runtime.accept(update)
        assert not await runtime.accept(update)
        await runtime.idle()
        assert not await runtime.accept(update)
        await runtime.idle()

        assert count(services, t.Inbound, t.Inbound.state == "done") == 1
        assert count(services, t.Identity, t.Identity.address == str(USER), t.Identity.resident_id.is_not(None)) == 1
        assert count(services, t.Outbox, t.Outbox.channel == "telegram", t.Outbox.address == str(USER)) == 1
        await services.sender.drain()
        assert "已登记" in (fake.sent(USER)[0].text or "")
    finally:
        await runtime.dispatcher.storage.close()
        await runtime.bot.session.close()


def test_fsm_state_and_isolation_live_in_redis_when_configured(services: Services) -> None:
    dispatcher = services.telegram.dispatcher
    if services.settings.redis_url:
        from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

        assert isinstance(dispatcher.storage, RedisStorage)
        assert isinstance(dispatcher.fsm.events_isolation, RedisEventIsolation)
    else:
        assert isinstance(dispatcher.storage, MemoryStorage)
