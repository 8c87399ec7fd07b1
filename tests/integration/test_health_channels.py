"""/health per channel, served over real HTTP with the background loops running: backlog and dead
notices from the outbox, the Telegram poller's last successful getUpdates, and 503 when a
configured channel's loop has died or has failed for longer than DOWN_AFTER."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from bot.app import Services, build_app, build_services
from bot.settings import Settings
from bot.web.health import DOWN_AFTER
from storage import outbox
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.telegram_bot_api import FakeTelegram

TOKEN = "123456:TEST"


@pytest.fixture(scope="module")
def served_fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN]) as fake:
        yield fake


@pytest.fixture
def fake(served_fake: FakeTelegram) -> FakeTelegram:
    served_fake.reset()
    return served_fake


def build(fake: FakeTelegram, database_url: str, clock: FixedClock) -> Services:
    settings = Settings(database_url=database_url, secret_key="test", demo=True, telegram_bot_token=TOKEN,
                        telegram_api_base=fake.url, telegram_poll_timeout=1, send_idle_seconds=0.05,
                        # WeChat is configured but has nothing to send: it is listed, and not down.
                        wechat_appid="wx-test", wechat_secret="secret", wechat_api_base="http://127.0.0.1:9")
    services = build_services(settings, clock=clock, classifier=KeywordClassifier(), state=MemoryStateStore())
    services.telegram.receiving.first = services.telegram.receiving.cap = 0.05
    return services


def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.01)
    return value


def health(served: ServedApp) -> httpx.Response:
    return httpx.get(f"{served.url}/health", timeout=10, trust_env=False)


def queue(services: Services, channel: str, address: str, *, dead: bool = False) -> None:
    """A notice held back for a day (so the running sender leaves it alone), or a dead one."""
    with UnitOfWork(services.engine) as uow:
        outbox.enqueue(uow.session, channel=channel, address=address, text="通知",
                       now=services.clock.now())
        uow.commit()
    with UnitOfWork(services.engine) as uow:
        row = uow.session.scalars(select(t.Outbox).order_by(col(t.Outbox.id).desc())).first()
        assert row is not None
        row.next_attempt_at = services.clock.now() + dt.timedelta(days=1)
        if dead:
            row.state = "dead"
        uow.commit()


def test_each_channel_reports_its_loops_backlog_and_dead_notices(
        fake: FakeTelegram, database_url: str, clock: FixedClock) -> None:
    services = build(fake, database_url, clock)
    queue(services, "telegram", "1001")
    queue(services, "telegram", "1002")
    queue(services, "telegram", "1003", dead=True)
    queue(services, "web", "resident:1", dead=True)
    with ServedApp(build_app(services)) as served:
        until(lambda: services.telegram.receiving.last_ok_at is not None and services.sender.loop.running)
        answer = health(served)
    services.engine.dispose()

    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    channels = body["channels"]
    assert set(channels) == {"web", "telegram", "wechat"}
    telegram = channels["telegram"]
    assert {k: telegram[k] for k in ("running", "backlog", "dead", "down")} == {
        "running": True, "backlog": 2, "dead": 1, "down": False}
    assert telegram["receiving"]["mode"] == "polling"
    assert telegram["last_ok_at"] == telegram["receiving"]["last_ok_at"] == clock.now().isoformat()
    assert {k: channels["web"][k] for k in ("running", "backlog", "dead", "down")} == {
        "running": True, "backlog": 0, "dead": 1, "down": False}
    assert {k: channels["wechat"][k] for k in ("running", "last_ok_at", "backlog", "dead", "down")} == {
        "running": True, "last_ok_at": None, "backlog": 0, "dead": 0, "down": False}


@pytest.mark.slow
def test_telegram_failing_past_the_threshold_is_503_and_recovers(
        fake: FakeTelegram, sqlite_url: str, clock: FixedClock) -> None:
    fake.fail_next(None, method="getUpdates", fault="html")
    services = build(fake, sqlite_url, clock)
    receiving = services.telegram.receiving
    with ServedApp(build_app(services)) as served:
        until(lambda: receiving.failures >= 2)
        failing = health(served)
        clock.advance(DOWN_AFTER + dt.timedelta(seconds=1))
        seen = receiving.failures
        until(lambda: receiving.failures > seen)  # it still fails, now past the threshold
        down = health(served)
        fake.reset()  # the server answers properly again
        until(lambda: receiving.failures == 0)
        back = health(served)
    services.engine.dispose()

    assert failing.status_code == 200
    assert failing.json()["channels"]["telegram"]["failing_since"] is not None
    assert down.status_code == 503 and down.json()["status"] == "degraded"
    telegram = down.json()["channels"]["telegram"]
    assert telegram["down"] and telegram["receiving"]["down"] and telegram["running"]
    assert not telegram["sending"]["down"] and not down.json()["channels"]["web"]["down"]
    assert back.status_code == 200 and back.json()["channels"]["telegram"]["failing_since"] is None


@pytest.mark.slow
def test_a_telegram_runtime_that_died_is_503(
        fake: FakeTelegram, sqlite_url: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    services = build(fake, sqlite_url, clock)

    async def broken(stop: Any) -> None:
        raise RuntimeError("a bug in the poller")

    monkeypatch.setattr(services.telegram, "_poll", broken)
    with ServedApp(build_app(services)) as served:
        until(lambda: services.telegram.loop.died)
        answer = health(served)
    services.engine.dispose()

    assert answer.status_code == 503
    telegram = answer.json()["channels"]["telegram"]
    assert telegram["down"] and not telegram["running"] and not telegram["receiving"]["running"]
