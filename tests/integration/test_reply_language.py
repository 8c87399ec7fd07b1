"""A reply is in the language of the message it answers, and notices in the language of the
person's latest message: through the chat, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bot.app import Services
from handlers.conversation import written_language
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


def _language(services: Services, address: str) -> str | None:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Identity.language).where(t.Identity.address == address)).one()


@pytest.mark.parametrize(("text", "previous", "expected"), [
    ("谢谢", "en", "zh-Hans"),
    ("謝謝", "zh-Hans", "zh-Hant"),
    ("你好", "zh-Hant", "zh-Hant"),  # the same in both scripts: the person's Chinese stays
    ("你好", "en", "zh-Hans"),
    ("thanks", "zh-Hans", "en"),
    ("我家WiFi坏了", "en", "zh-Hans"),
    ("👍", "en", None),
    ("123", "zh-Hans", None),
    ("ZN-B01", "en", None),
    ("/status ZN-20261121-0007", "en", None),
    ("/figures grid", "zh-Hans", None),  # a command's keywords are not English
    ("/reply 42 已修好", "en", "zh-Hans"),
])
def test_the_language_of_a_message_is_its_script(text: str, previous: str, expected: str | None) -> None:
    assert written_language(text, previous) == expected


async def test_thanks_and_my_cases_after_an_english_message_are_answered_in_chinese(chat: Chat) -> None:
    resident = chat.resident(0)
    said = await resident.says("thanks")
    assert "You're welcome" in said.text
    said = await resident.says("谢谢")
    assert "不客气" in said.text
    await resident.says("the street light is broken")
    said = await resident.says("我的工单")
    assert "您最近的工单" in said.text and "Your recent cases" not in said.text
    await resident.says("ok")
    said = await resident.says("/status")
    assert "Your recent cases" in said.text


async def test_a_message_without_letters_keeps_the_last_language(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    await resident.says("hello")
    said = await resident.says("👍")
    assert said.text.startswith("Registered as case")
    await resident.says("你好")
    said = await resident.says("👍")
    assert said.text.startswith("已受理")
    said = await resident.says(f"/status {NUMBER.search(said.text).group(0)}")  # type: ignore[union-attr]
    assert said.text.startswith("工单")
    assert _language(services, resident.address) == "zh-Hans"


async def test_traditional_chinese_is_answered_in_traditional_chinese_and_staff_in_theirs(chat: Chat, services: Services) -> None:
    resident = chat.resident(0)
    said = await resident.says("樓道燈壞了三天")
    assert "負責人" in said.text and "负责人" not in said.text
    said = await resident.says("我的工單")
    assert "您最近的工單" in said.text
    assert _language(services, resident.address) == "zh-Hant"
    # Staff too.
    worker = chat.staff("zhang_li")
    said = await worker.says("hello")
    assert "/mine" in said.text and "我的待办" not in said.text
    said = await worker.says("你好")
    assert "我的待办工单" in said.text


async def test_notices_follow_the_language_of_the_latest_message(chat: Chat, services: Services) -> None:
    resident, worker = chat.resident(0), chat.staff("zhang_li")
    said = await resident.says("楼道灯坏了")
    case_id = int(said.action("查询进度").split(":")[1])
    await resident.says("thanks")
    await worker.says(f"/ack {case_id}")
    [acknowledged] = await resident.inbox()
    assert "was acknowledged by" in acknowledged.text
    await resident.says("谢谢")
    await worker.says(f"/reply {case_id} 明天上午来修")
    [replied] = await resident.inbox()
    assert "有答复" in replied.text and "明天上午来修" in replied.text

