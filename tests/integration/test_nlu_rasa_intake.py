"""NLU_BACKEND=rasa through the whole pipeline (build_services wires it) against a loopback
Rasa: a resident's message is never lost, whatever the server does, and a reading the embedded
model disputes is asked about rather than acted on."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import Services, build_services
from bot.settings import Settings
from nlu import RasaClassifier
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat
from tests.fakes.rasa import FakeRasa, refused_url

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
REPORT = "楼道灯坏了三天了，晚上很黑，麻烦派人来修"
CLARIFY = "为了转给对的人"


@pytest.fixture
def rasa() -> Iterator[FakeRasa]:
    fake = FakeRasa(token="s3cret")
    with fake.serving():
        yield fake


@pytest.fixture
def started() -> Iterator[list[Services]]:
    built: list[Services] = []
    yield built
    for services in built:
        assert isinstance(services.classifier, RasaClassifier)
        services.classifier.close()
        services.engine.dispose()


def start(started: list[Services], database_url: str, clock: FixedClock, url: str,
          **rasa: Any) -> Services:
    settings = Settings(database_url=database_url, secret_key="x", demo=True,
                        nlu_backend="rasa", rasa_url=url, **rasa)
    services = build_services(settings, clock=clock)
    started.append(services)
    return services


def rasa_of(services: Services) -> RasaClassifier:
    assert isinstance(services.classifier, RasaClassifier)
    return services.classifier


def cases(services: Services) -> list[t.Case]:
    with UnitOfWork(services.engine) as uow:
        return list(uow.session.scalars(select(t.Case)))


def assert_no_text_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    for record in caplog.records:
        if record.levelno >= logging.INFO:
            assert text[:4] not in record.getMessage()


async def test_with_rasa_down_the_message_is_filed_as_a_case(
        database_url: str, clock: FixedClock, started: list[Services],
        caplog: pytest.LogCaptureFixture) -> None:
    services = start(started, database_url, clock, refused_url())
    with caplog.at_level(logging.INFO):
        said = await Chat(services).resident(0).says(REPORT)
    assert NUMBER.search(said.text)
    [case] = cases(services)
    assert (case.kind, case.category) == ("service_request", "facilities")
    assert rasa_of(services).fallbacks == 1
    warnings = [r for r in caplog.records if r.name == "nlu.rasa_http" and "reads the messages for" in r.getMessage()]
    assert [w.levelno for w in warnings] == [logging.WARNING]
    assert "could not be reached" in warnings[0].getMessage()
    assert_no_text_logged(caplog, REPORT)


async def test_rasa_answers_with_the_token_and_its_reading_is_filed(
        rasa: FakeRasa, database_url: str, clock: FixedClock, started: list[Services]) -> None:
    services = start(started, database_url, clock, rasa.url,
                     rasa_token="s3cret")
    said = await Chat(services).resident(0).says("我想申请低保，需要准备什么材料")
    assert NUMBER.search(said.text)
    [case] = cases(services)
    assert (case.kind, case.category) == ("service_request", "civil_affairs")
    assert "我想申请低保，需要准备什么材料" in rasa.texts
    assert set(rasa.tokens) == {"s3cret"}
    assert rasa_of(services).fallbacks == 0


@pytest.mark.parametrize("fault", ["no_token", "html_500", "truncated", "not_a_parse"])
async def test_whatever_rasa_answers_the_message_is_filed(
        rasa: FakeRasa, sqlite_url: str, clock: FixedClock, started: list[Services],
        fault: str) -> None:
    token = None if fault == "no_token" else "s3cret"
    services = start(started, sqlite_url, clock, rasa.url, rasa_token=token)
    if fault != "no_token":
        rasa.fault = fault  # type: ignore[assignment]
    said = await Chat(services).resident(0).says(REPORT)
    assert NUMBER.search(said.text)
    assert len(cases(services)) == 1
    assert REPORT in rasa.texts  # Rasa was asked, and the embedded model stood in
    assert rasa_of(services).fallbacks == 1


async def test_a_hanging_rasa_neither_holds_up_the_start_nor_loses_the_message(
        rasa: FakeRasa, sqlite_url: str, clock: FixedClock, started: list[Services]) -> None:
    rasa.fault = "hang"
    services = start(started, sqlite_url, clock, rasa.url,
                     rasa_token="s3cret", rasa_timeout=0.3)
    # The warm-up parse is still hanging: the start did not wait for it.
    assert rasa.answered == 0
    said = await Chat(services).resident(0).says(REPORT)
    assert NUMBER.search(said.text)
    assert len(cases(services)) == 1
    assert REPORT in rasa.texts and rasa.answered == 0
    clf = rasa_of(services)
    assert clf.fallbacks == 1
    assert clf.last_failure is not None and "did not answer within 0.3 s" in clf.last_failure


async def test_a_reading_the_embedded_model_disputes_is_asked_about(
        rasa: FakeRasa, sqlite_url: str, clock: FixedClock, started: list[Services]) -> None:
    """Rasa reads "thanks" at 0.93 in a request that opens with thanks; taken at its word, the
    resident would get "you're welcome" and no case."""
    services = start(started, sqlite_url, clock, rasa.url, rasa_token="s3cret")
    resident = Chat(services).resident(0)
    said = await resident.says("谢谢，但是楼道灯坏了三天了请派人修")
    assert CLARIFY in said.text
    assert not NUMBER.search(said.text) and cases(services) == []
    said = await resident.presses(said.action("办事 / 求助"))
    assert NUMBER.search(said.text)
    [case] = cases(services)
    assert (case.kind, case.category) == ("service_request", "facilities")
    assert rasa_of(services).fallbacks == 0


async def test_a_reading_both_agree_on_is_not_asked_about(
        rasa: FakeRasa, sqlite_url: str, clock: FixedClock, started: list[Services]) -> None:
    services = start(started, sqlite_url, clock, rasa.url, rasa_token="s3cret")
    resident = Chat(services).resident(0)
    said = await resident.says("谢谢你们")
    assert CLARIFY not in said.text and "不客气" in said.text
    said = await resident.says(REPORT)
    assert CLARIFY not in said.text and NUMBER.search(said.text)


async def test_health_shows_rasa_away_without_turning_unhealthy(
        sqlite_url: str, clock: FixedClock, started: list[Services]) -> None:
    import httpx

    from bot.app import build_app

    services = start(started, sqlite_url, clock, refused_url())
    await Chat(services).resident(0).says(REPORT)
    transport = httpx.ASGITransport(app=build_app(services, run_background=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://griddesk") as client:
        answer = await client.get("/health")
    assert answer.status_code == 200
    nlu = answer.json()["nlu"]
    assert nlu["backend"] == "rasa" and nlu["answering"] is False and nlu["fallbacks"] == 1
    assert "could not be reached" in nlu["last_failure"]
