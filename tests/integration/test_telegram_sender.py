"""TelegramSender against the loopback Bot API: limits, Telegram's errors, long texts."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from bot.channels.base import Outgoing, SendResult
from bot.channels.telegram import TelegramSender
from tests.fakes.telegram_bot_api import FakeTelegram

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "123456:TEST"
CHAT = 1001
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN]) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake(served: FakeTelegram) -> FakeTelegram:
    served.reset()
    served.clock = time.time
    served.per_chat_per_second = served.per_group_per_minute = served.global_per_second = None
    served.user(CHAT, "王芳")
    served.start_bot(CHAT)
    return served


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(served: FakeTelegram) -> AsyncIterator[Any]:
    bot = served.bot()
    yield bot
    await bot.session.close()


def notice(text: str, buttons: list[list[dict[str, str]]] | None = None, chat: int = CHAT) -> Outgoing:
    return Outgoing(next(_ids), "telegram", str(chat), text, buttons or [])


def fast(bot: Any) -> TelegramSender:
    return TelegramSender(bot, per_chat_per_second=1000, global_per_second=1000)


async def test_a_chat_over_its_budget_waits_without_sending(fake: FakeTelegram, bot: Any) -> None:
    sender = TelegramSender(bot, per_chat_per_second=1.0, global_per_second=30)

    assert (await sender.send(notice("一"))).ok
    held = await sender.send(notice("二"))

    assert not held.ok and held.retry_after is not None and 0 < held.retry_after <= 1.0
    assert not held.error and not held.unreachable
    assert [m.text for m in fake.sent(CHAT)] == ["一"]


async def test_telegrams_429_becomes_retry_after(fake: FakeTelegram, bot: Any) -> None:
    fake.fail_next(1, method="sendMessage", retry_after=3)

    result = await fast(bot).send(notice("通知"))

    assert result == SendResult(ok=False, retry_after=3.0)
    assert fake.sent(CHAT) == []


@pytest.mark.parametrize("who", ["blocked", "never_started", "unknown"])
async def test_unreachable_chats_are_reported_not_retried(fake: FakeTelegram, bot: Any, who: str) -> None:
    chat = {"blocked": CHAT, "never_started": 2002, "unknown": 9999}[who]
    if who == "blocked":
        fake.block(CHAT)
    else:
        fake.user(2002, "张丽")

    result = await fast(bot).send(notice("通知", chat=chat))

    assert result.unreachable and not result.ok and result.error


async def test_a_server_error_is_retried_later(fake: FakeTelegram, bot: Any) -> None:
    fake.fail_next(1, method="sendMessage", error_code=502)

    result = await fast(bot).send(notice("通知"))

    assert not result.ok and not result.unreachable and result.retry_after is None and result.error


async def test_long_text_arrives_in_parts_with_the_buttons_on_the_last(fake: FakeTelegram, bot: Any) -> None:
    text = "\n".join(f"{i:04d} " + "办" * 60 for i in range(150))
    buttons = [[{"label": "签收", "action": "ack:1"}]]
    assert (await fast(bot).send(notice(text, buttons))).ok
    parts = fake.sent(CHAT)
    assert len(parts) == 3 and "\n".join(m.text or "" for m in parts) == text
    assert [m.reply_markup for m in parts[:-1]] == [None, None]
    assert parts[-1].reply_markup == {"inline_keyboard": [[{"text": "签收", "callback_data": "ack:1"}]]}


async def test_a_split_message_resumes_after_a_429(fake: FakeTelegram, bot: Any) -> None:
    clock = [100.0]
    sender = TelegramSender(bot, per_chat_per_second=10, global_per_second=1000, now=lambda: clock[0])
    message = notice("甲" * 4096 + "乙" * 4096 + "丙")
    fake.fail_next(1, method="sendMessage", retry_after=2)
    fake.per_chat_per_second = 1

    results = []
    for _ in range(10):  # the outbox's retries, each after the wait it was told
        result = await sender.send(message)
        results.append(result)
        if result.ok:
            break
        assert result.retry_after is not None and not result.error
        clock[0] += result.retry_after
        fake.clock = lambda: 1_800_000_000.0 + clock[0]

    assert results[0].retry_after == 2.0 and results[-1].ok
    assert [m.text for m in fake.sent(CHAT)] == ["甲" * 4096, "乙" * 4096, "丙"]


async def test_ask_for_text_uses_force_reply(fake: FakeTelegram, bot: Any) -> None:
    assert (await fast(bot).send(notice("请输入答复", [[{"markup": "force_reply"}]]))).ok
    assert fake.sent(CHAT)[-1].reply_markup == {"force_reply": True}
