"""An urgent reading always tells the resident to call 110/119/120, in every language, and never
waits on a question first: nobody is alerted while a button goes unpressed."""

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
EMERGENCY_LINES = ("110", "119", "120")


def _cases(services: Services) -> list[t.Case]:
    with UnitOfWork(services.engine) as uow:
        return list(uow.session.scalars(select(t.Case)).all())


@pytest.fixture
def real(sqlite_url: str, clock: FixedClock) -> Iterator[Services]:
    services = build_services(Settings(database_url=sqlite_url, secret_key="x", demo=True), clock=clock)
    yield services
    services.engine.dispose()


@pytest.mark.parametrize(("text", "answered_in"), [
    ("隔壁阿姨在楼道里昏倒了，怎么叫都没反应", "请立即拨打"),
    ("電梯卡咗喺三樓同四樓中間，困咗我哋成個鐘🙏", "請立即撥打"),
    ("my neighbour collapsed on the landing and is not responding", "call 110"),
])
async def test_an_emergency_in_each_language_gets_the_emergency_numbers(
        real: Services, text: str, answered_in: str) -> None:
    said = await Chat(real).resident(0).says(text)
    assert all(number in said.text for number in EMERGENCY_LINES)
    assert answered_in in said.text
    assert NUMBER.search(said.text)
    assert [case.urgent for case in _cases(real)] == [True]


async def test_an_urgent_reading_the_bot_is_unsure_of_is_filed_at_once(chat: Chat, services: Services) -> None:
    # The keyword classifier reads "不确定" at kind confidence 0.3: normally a clarifying question.
    said = await chat.resident(0).says("不确定找谁，楼道里有燃气味")
    assert all(number in said.text for number in EMERGENCY_LINES)
    assert [case.urgent for case in _cases(services)] == [True]


async def test_an_urgent_reading_is_not_taken_for_small_talk(chat: Chat, services: Services) -> None:
    said = await chat.resident(0).says("你好，楼道里有燃气味")
    assert all(number in said.text for number in EMERGENCY_LINES)
    assert [case.urgent for case in _cases(services)] == [True]


async def test_an_emergency_at_another_building_is_filed_there_without_asking(real: Services) -> None:
    resident = Chat(real).resident(0)  # lives in 中南小区3栋
    said = await resident.says("中南小区5栋门口有个老人晕倒了，叫不醒")
    assert all(number in said.text for number in EMERGENCY_LINES)
    [case] = _cases(real)
    with UnitOfWork(real.engine) as uow:
        building = uow.session.get(t.Building, case.building_id)
        assert building is not None and building.code == "ZN-B05"
    assert case.urgent
