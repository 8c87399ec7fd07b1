"""The shipped NLU model wired into the case desk: languages, proposals, places, urgency."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.app import Services, build_services
from bot.settings import Settings
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


@pytest.fixture
def real(sqlite_url: str, clock: FixedClock) -> Iterator[Services]:
    services = build_services(Settings(database_url=sqlite_url, secret_key="x", demo=True), clock=clock)
    yield services
    services.engine.dispose()


async def test_traditional_chinese_report_is_answered_in_traditional(real: Services) -> None:
    said = await Chat(real).resident(0).says("樓道的燈壞了三天了，晚上很黑，麻煩派人來修")
    assert NUMBER.search(said.text)
    assert "負責人" in said.text


async def test_english_report_is_answered_in_english(real: Services) -> None:
    said = await Chat(real).resident(0).says("The stairwell light in my building has been broken for three days")
    assert NUMBER.search(said.text)
    assert "Responsible" in said.text


async def test_proposal_goes_to_the_council_not_the_case_desk(real: Services) -> None:
    said = await Chat(real).resident(0).says("我建议在小区空地上增设一些健身器材，方便老年人锻炼")
    assert not NUMBER.search(said.text)
    assert "ZN-P-" in said.text
    with UnitOfWork(real.engine) as uow:
        assert uow.session.scalars(select(t.Case)).first() is None


async def test_urgent_gas_smell_alerts_duty_leader(real: Services) -> None:
    said = await Chat(real).resident(0).says("楼道里好大一股煤气味，好像哪家漏气了")
    assert "119" in said.text
    with UnitOfWork(real.engine) as uow:
        case = uow.session.scalars(select(t.Case)).one()
        assert case.urgent


async def test_other_building_named_in_the_text_is_confirmed_first(real: Services) -> None:
    resident = Chat(real).resident(0)  # lives in 中南小区3栋
    said = await resident.says("中南小区5栋门口的井盖丢了，很危险")
    assert not NUMBER.search(said.text)
    assert "中南小区5栋" in said.text
    said = await resident.presses(said.action("在 中南小区5栋"))
    assert NUMBER.search(said.text)
    with UnitOfWork(real.engine) as uow:
        case = uow.session.scalars(select(t.Case)).one()
        building = uow.session.get(t.Building, case.building_id)
        assert building is not None and building.code == "ZN-B05"


async def test_greeting_and_grid_worker_question_create_nothing(real: Services) -> None:
    resident = Chat(real).resident(0)
    assert "您好" in (await resident.says("你好")).text
    assert "网格员" in (await resident.says("我们的网格员是谁啊")).text
    with UnitOfWork(real.engine) as uow:
        assert uow.session.scalars(select(t.Case)).first() is None
