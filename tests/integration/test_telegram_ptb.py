"""A second, independent Bot API client against the loopback fake: python-telegram-bot.

The fake is written against aiogram, the client griddesk uses, so a habit of aiogram's could hide
a fake that no real server resembles. Here python-telegram-bot (PTB) makes the calls griddesk
makes (getMe, getUpdates, sendMessage, answerCallbackQuery, sendPhoto, getFile, setMyCommands)
and both clients must read the same objects, with no field either does not know (PTB keeps
unknown fields in `api_kwargs`, aiogram in `model_extra`). The fake's broken answers must look
broken to PTB too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import telegram
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup
from pydantic import BaseModel

from tests.fakes.telegram_bot_api import FakeTelegram

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "123456:TEST"
RESIDENT = 1001


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN]) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake(served: FakeTelegram) -> FakeTelegram:
    served.reset()
    served.user(RESIDENT, "王芳", username="wangfang")
    served.start_bot(RESIDENT)
    return served


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def aio(served: FakeTelegram) -> AsyncIterator[Bot]:
    bot = served.bot()
    yield bot
    await bot.session.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ptb(served: FakeTelegram) -> AsyncIterator[telegram.Bot]:
    bot = telegram.Bot(TOKEN, base_url=f"{served.url}/bot", base_file_url=f"{served.url}/file/bot")
    await bot.initialize()
    yield bot
    await bot.shutdown()


def unknown_to_ptb(obj: Any, path: str = "") -> list[str]:
    """Fields PTB did not recognise, anywhere in a deserialised object."""
    found: list[str] = []
    if isinstance(obj, telegram.TelegramObject):
        found += [f"{path or type(obj).__name__}.{key}" for key in obj.api_kwargs]
        for name, value in obj._get_attrs(recursive=False).items():
            found += unknown_to_ptb(value, f"{path}.{name}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found += unknown_to_ptb(value, f"{path}[{i}]")
    return found


def unknown_to_aiogram(obj: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(obj, BaseModel):
        found += [f"{path or type(obj).__name__}.{key}" for key in (obj.model_extra or {})]
        for name in type(obj).model_fields:
            found += unknown_to_aiogram(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            found += unknown_to_aiogram(value, f"{path}[{i}]")
    return found


def known(ours: Any, theirs: Any) -> None:
    assert unknown_to_aiogram(ours) == []
    assert unknown_to_ptb(theirs) == []


async def test_get_me(aio: Bot, ptb: telegram.Bot) -> None:
    ours, theirs = await aio.get_me(), await ptb.get_me()

    known(ours, theirs)
    assert (theirs.id, theirs.username, theirs.is_bot) == (ours.id, ours.username, True)


async def test_get_updates_of_every_kind_griddesk_reads(fake: FakeTelegram, aio: Bot, ptb: telegram.Bot) -> None:
    fake.inject_text(RESIDENT, "楼道灯坏了")
    fake.inject_photo(RESIDENT, caption="照片")
    fake.inject_voice(RESIDENT, b"OggS voice")
    fake.inject_document(RESIDENT, b"\x89PNG picture", "picture.png", "image/png")
    fake.inject_location(RESIDENT, 26.5694, 106.7175)
    fake.block(RESIDENT)
    fake.unblock(RESIDENT)

    # Without an offset nothing is confirmed, so both clients read the same updates.
    ours, theirs = await aio.get_updates(timeout=0), await ptb.get_updates(timeout=0)

    known(ours, theirs)
    assert [u.update_id for u in theirs] == [u.update_id for u in ours] and len(ours) == 8
    texts = [(u.message.text, u.message.caption) if u.message else None for u in theirs]
    assert texts == [(m.message.text, m.message.caption) if m.message else None for m in ours]
    start, text, photo, voice, document, location, blocked, _ = theirs
    assert start.message is not None and start.message.text == "/start"
    assert text.effective_user is not None and text.effective_user.username == "wangfang"
    assert photo.message is not None and [p.file_id for p in photo.message.photo] == [
        p.file_id for p in ours[2].message.photo or []]
    assert voice.message is not None and voice.message.voice is not None
    assert document.message is not None and document.message.document is not None
    assert document.message.document.mime_type == "image/png"
    assert location.message is not None and location.message.location is not None
    assert location.message.location.latitude == pytest.approx(26.5694)
    assert blocked.my_chat_member is not None
    assert blocked.my_chat_member.new_chat_member.status == telegram.ChatMember.BANNED


async def test_send_message_with_buttons(fake: FakeTelegram, aio: Bot, ptb: telegram.Bot) -> None:
    ours = await aio.send_message(RESIDENT, "请选择", reply_markup=InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="满意", callback_data="rate:5")]]))
    theirs = await ptb.send_message(RESIDENT, "请选择", reply_markup=telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("满意", callback_data="rate:5")]]))

    known(ours, theirs)
    assert theirs.message_id == ours.message_id + 1 and theirs.text == ours.text == "请选择"
    assert theirs.reply_markup is not None
    assert theirs.reply_markup.inline_keyboard[0][0].callback_data == "rate:5"
    assert [m.reply_markup for m in fake.sent(RESIDENT)] == [
        {"inline_keyboard": [[{"text": "满意", "callback_data": "rate:5"}]]}] * 2


async def test_answer_callback_query(fake: FakeTelegram, aio: Bot, ptb: telegram.Bot) -> None:
    card = await aio.send_message(RESIDENT, "工单", reply_markup=InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="签收", callback_data="ack:1")]]))
    first = fake.inject_callback_query(RESIDENT, card.message_id, "ack:1")["callback_query"]["id"]
    second = fake.inject_callback_query(RESIDENT, card.message_id, "ack:1")["callback_query"]["id"]
    seen = (await ptb.get_updates(timeout=0))[-1]

    assert seen.callback_query is not None and seen.callback_query.id == second
    assert seen.callback_query.message is not None and seen.callback_query.message.message_id == card.message_id
    assert await aio.answer_callback_query(first) is True
    assert await ptb.answer_callback_query(second, text="已签收") is True
    assert [(a.callback_query_id, a.text) for a in fake.answered_callbacks()] == [
        (first, None), (second, "已签收")]
    with pytest.raises(telegram.error.BadRequest, match="Query is too old"):
        await ptb.answer_callback_query(second)


async def test_send_photo_and_get_file_round_trip(aio: Bot, ptb: telegram.Bot) -> None:
    content = b"\xff\xd8 a photo"
    ours = await aio.send_photo(RESIDENT, telegram_input(content))
    theirs = await ptb.send_photo(RESIDENT, content)

    known(ours, theirs)
    assert ours.photo and theirs.photo and len(theirs.photo) == len(ours.photo)
    their_file = await ptb.get_file(theirs.photo[-1].file_id)
    our_file = await aio.get_file(ours.photo[-1].file_id)
    known(our_file, their_file)
    assert bytes(await their_file.download_as_bytearray()) == content
    downloaded = await aio.download_file(our_file.file_path or "")
    assert downloaded is not None and downloaded.read() == content


async def test_get_file_of_what_a_user_sent(fake: FakeTelegram, aio: Bot, ptb: telegram.Bot) -> None:
    voice = fake.inject_voice(RESIDENT, b"OggS recording")["message"]["voice"]["file_id"]

    ours, theirs = await aio.get_file(voice), await ptb.get_file(voice)

    known(ours, theirs)
    assert theirs.file_size == ours.file_size == len(b"OggS recording")
    assert (theirs.file_path or "").endswith(ours.file_path or "-")
    assert bytes(await theirs.download_as_bytearray()) == b"OggS recording"
    with pytest.raises(telegram.error.BadRequest, match="Invalid file_id"):
        await ptb.get_file("no-such-file")


async def test_set_my_commands_is_checked_as_telegram_checks_it(aio: Bot, ptb: telegram.Bot) -> None:
    assert await aio.set_my_commands([BotCommand(command="status", description="我的工单")]) is True
    assert await ptb.set_my_commands([telegram.BotCommand("status", "我的工单")], language_code="en") is True

    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await aio.set_my_commands([BotCommand(command="Status!", description="我的工单")])
    with pytest.raises(telegram.error.BadRequest, match="Bot_command_invalid"):
        await ptb.set_my_commands([telegram.BotCommand("Status!", "我的工单")])


@pytest.mark.parametrize("broken", [{"fault": "html"}, {"fault": "html", "error_code": 404},
                                    {"fault": "truncated"}, {"fault": "reset"}, {"drop": True}],
                         ids=lambda b: "-".join(str(v) for v in b.values()))
async def test_a_broken_answer_is_an_error_in_ptb_too(fake: FakeTelegram, ptb: telegram.Bot,
                                                      broken: dict[str, Any]) -> None:
    fake.fail_next(method="sendMessage", **broken)

    with pytest.raises(telegram.error.TelegramError):
        await ptb.send_message(RESIDENT, "通知")

    assert (await ptb.send_message(RESIDENT, "通知")).text == "通知"


async def test_a_long_poll_answered_at_once_returns_nothing_in_ptb(fake: FakeTelegram, ptb: telegram.Bot) -> None:
    await ptb.get_updates(timeout=0, offset=-1)  # confirm what the fixture's Start left
    fake.fail_next(method="getUpdates", fault="instant")
    before = fake.requests("getUpdates")

    assert await ptb.get_updates(offset=fake.pending_updates()[-1]["update_id"] + 1, timeout=30) == ()
    assert fake.requests("getUpdates") == before + 1


def telegram_input(content: bytes) -> Any:
    from aiogram.types import BufferedInputFile

    return BufferedInputFile(content, filename="photo.jpg")
