"""TelegramSender against the loopback Bot API: limits, Telegram's errors, long texts, photos."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine

from bot.channels.base import Outgoing, SendResult
from bot.channels.telegram import TelegramSender
from storage import media
from storage.unit_of_work import UnitOfWork
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


async def retried(sender: TelegramSender, message: Outgoing, clock: list[float],
                  fake: FakeTelegram) -> list[SendResult]:
    """The outbox's retries of one notice, each after the wait it was told, until it is sent:
    every answer but the last is a wait, never a failure."""
    results = []
    for _ in range(10):
        result = await sender.send(message)
        results.append(result)
        if result.ok:
            break
        assert result.retry_after is not None and not result.error and not result.unreachable
        clock[0] += result.retry_after
        fake.clock = lambda: 1_800_000_000.0 + clock[0]
    return results


async def test_a_split_message_resumes_after_a_429(fake: FakeTelegram, bot: Any) -> None:
    clock = [100.0]
    sender = TelegramSender(bot, per_chat_per_second=10, global_per_second=1000, now=lambda: clock[0])
    message = notice("甲" * 4096 + "乙" * 4096 + "丙")
    fake.fail_next(1, method="sendMessage", retry_after=2)
    fake.per_chat_per_second = 1

    results = await retried(sender, message, clock, fake)

    assert results[0].retry_after == 2.0 and results[-1].ok
    assert [m.text for m in fake.sent(CHAT)] == ["甲" * 4096, "乙" * 4096, "丙"]


async def test_ask_for_text_uses_force_reply(fake: FakeTelegram, bot: Any) -> None:
    assert (await fast(bot).send(notice("请输入答复", [[{"markup": "force_reply"}]]))).ok
    assert fake.sent(CHAT)[-1].reply_markup == {"force_reply": True}


# --------------------------------------------------------------------------- photos


def kept(engine: Engine, *contents: bytes) -> list[int]:
    with UnitOfWork(engine) as uow:
        ids = [media.put(uow.session, data, "image/jpeg").id or 0 for data in contents]
        uow.commit()
    return ids


def held(fake: FakeTelegram, file_id: str) -> bytes:
    """The bytes the Bot API holds for a file the bot sent (getFile, then the file URL)."""
    with httpx.Client(base_url=fake.url, trust_env=False) as client:
        path = client.get(f"/bot{TOKEN}/getFile", params={"file_id": file_id}).json()["result"]["file_path"]
        return client.get(f"/file/bot{TOKEN}/{path}").content


def with_photos(text: str, ids: list[int]) -> Outgoing:
    return Outgoing(next(_ids), "telegram", str(CHAT), text, [[{"label": "签收", "action": "ack:1"}]],
                    tuple(ids))


async def test_photos_go_first_and_a_refused_one_is_left_out(fake: FakeTelegram, bot: Any,
                                                             engine: Engine) -> None:
    first, second = kept(engine, b"\xff\xd8 first photo", b"\xff\xd8 second photo")
    # Telegram refuses the first upload: the second photo and the card still go.
    fake.fail_next(1, method="sendPhoto", error_code=400, description="Bad Request: IMAGE_PROCESS_FAILED")
    sender = TelegramSender(bot, engine=engine, per_chat_per_second=1000, global_per_second=1000)

    assert (await sender.send(with_photos("工单卡片", [first, second]))).ok

    arrived = fake.sent(CHAT)
    assert [(m.photo is not None, m.text) for m in arrived] == [(True, None), (False, "工单卡片")]
    assert held(fake, arrived[0].photo or "") == b"\xff\xd8 second photo"
    assert arrived[1].reply_markup == {"inline_keyboard": [[{"text": "签收", "callback_data": "ack:1"}]]}


async def test_a_notice_held_by_limits_resumes_without_repeating_a_photo(
        fake: FakeTelegram, bot: Any, engine: Engine) -> None:
    first, second = kept(engine, b"\xff\xd8 one", b"\xff\xd8 two")
    clock = [100.0]
    sender = TelegramSender(bot, engine=engine, per_chat_per_second=10, global_per_second=1000,
                            now=lambda: clock[0])
    message = with_photos("工单卡片", [first, second])
    fake.fail_next(1, method="sendPhoto", retry_after=2)

    results = await retried(sender, message, clock, fake)

    # Telegram's 429 on the first photo, then the chat's own pace before each later step.
    assert results[0] == SendResult(ok=False, retry_after=2.0) and results[-1].ok
    arrived = fake.sent(CHAT)
    assert [held(fake, m.photo) if m.photo else m.text for m in arrived] == [
        b"\xff\xd8 one", b"\xff\xd8 two", "工单卡片"]


async def test_photos_no_longer_kept_leave_the_card_alone(fake: FakeTelegram, bot: Any,
                                                          engine: Engine) -> None:
    [gone] = kept(engine, b"\xff\xd8 purged")
    with UnitOfWork(engine) as uow:
        row = media.get(uow.session, gone)
        uow.session.delete(row)
        uow.commit()
    with_engine = TelegramSender(bot, engine=engine, per_chat_per_second=1000, global_per_second=1000)

    assert (await with_engine.send(with_photos("工单卡片", [gone]))).ok
    # A sender given no database sends the text of a notice that carries photos.
    assert (await fast(bot).send(with_photos("另一张卡片", [gone]))).ok
    assert [(m.photo, m.text) for m in fake.sent(CHAT)] == [(None, "工单卡片"), (None, "另一张卡片")]


async def test_a_blocked_chat_stops_at_the_first_photo(fake: FakeTelegram, bot: Any, engine: Engine) -> None:
    [photo] = kept(engine, b"\xff\xd8 photo")
    fake.block(CHAT)
    sender = TelegramSender(bot, engine=engine, per_chat_per_second=1000, global_per_second=1000)

    result = await sender.send(with_photos("工单卡片", [photo]))

    assert result.unreachable and not result.ok and result.error


# --------------------------------------------------------------------------- broken servers

BROKEN = [{"fault": "html"}, {"fault": "html", "error_code": 404}, {"fault": "truncated"},
          {"fault": "reset"}, {"drop": True}]


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: "-".join(str(v) for v in b.values()))
async def test_a_photo_answered_with_something_not_the_bot_api_is_left_out_and_the_card_arrives(
        fake: FakeTelegram, bot: Any, engine: Engine, broken: dict[str, Any]) -> None:
    [photo] = kept(engine, b"\xff\xd8 photo")
    fake.fail_next(1, method="sendPhoto", **broken)
    sender = TelegramSender(bot, engine=engine, per_chat_per_second=1000, global_per_second=1000)

    assert (await sender.send(with_photos("工单卡片", [photo]))).ok

    assert fake.sent(CHAT)[-1].text == "工单卡片"


@pytest.mark.parametrize("broken", BROKEN, ids=lambda b: "-".join(str(v) for v in b.values()))
async def test_a_message_answered_with_something_not_the_bot_api_is_retried_later(
        fake: FakeTelegram, bot: Any, broken: dict[str, Any]) -> None:
    fake.fail_next(1, method="sendMessage", **broken)

    result = await fast(bot).send(notice("通知"))

    assert not result.ok and not result.unreachable and result.retry_after is None
    # The reason names the failure, never the answer's content (the message itself, for one).
    assert result.error and "通知" not in result.error and "<html>" not in result.error
    assert (await fast(bot).send(notice("通知"))).ok
