"""The loopback Telegram fake behaves as PROTOCOLS.md §1.3 says, seen through the real aiogram Bot.

Other tests trust this fake to stand in for Telegram, so each promise of §1.3 is checked here
with the client griddesk actually uses (aiogram 3) and, for the control API, plain httpx.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.serving import serve
from tests.fakes.telegram_bot_api import (
    BLOCKED,
    CANT_INITIATE,
    CONFLICT_POLLER,
    CONFLICT_WEBHOOK,
    MAX_DOWNLOAD_BYTES,
    NOT_MODIFIED,
    QUERY_TOO_OLD,
    FakeTelegram,
    ManualClock,
)

# One server and one Bot serve the whole module, so the tests share the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "123456:TEST"
RESIDENT = 1001
WORKER = 2002


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=f"button {i}", callback_data=d)] for i, d in enumerate(data)
    ])


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTelegram]:
    # time_scale makes the webhook's 2, 4, 8 s retries take 20, 40, 80 ms.
    with FakeTelegram(tokens=[TOKEN], time_scale=0.01) as fake:
        yield fake


@pytest.fixture(autouse=True)
def fake(served: FakeTelegram) -> FakeTelegram:
    """The module's fake, emptied, with default settings and two known users."""
    served.reset()
    served.clock = time.time
    served.per_chat_per_second = served.per_group_per_minute = served.global_per_second = None
    served.user(RESIDENT, "王芳")
    served.user(WORKER, "李强", username="liqiang")
    return served


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(served: FakeTelegram) -> AsyncIterator[Bot]:
    # One Bot for the module: closing an aiogram session waits 250 ms on purpose.
    bot = served.bot()
    yield bot
    await bot.session.close()


class Receiver:
    """A webhook endpoint on loopback that records each delivery and answers as told."""

    def __init__(self, answer: Callable[[dict[str, Any]], Response]) -> None:
        self.answer = answer
        self.deliveries: list[tuple[int, str | None]] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        update = await request.json()
        self.deliveries.append((update["update_id"],
                                request.headers.get("x-telegram-bot-api-secret-token")))
        return self.answer(update)

    def update_ids(self) -> list[int]:
        return [update_id for update_id, _ in self.deliveries]


def chat_of(update: dict[str, Any]) -> int:
    return int(update["message"]["chat"]["id"])


# --------------------------------------------------------------------------- sending


async def test_get_me_describes_the_bot_of_the_token(bot: Bot) -> None:
    me = await bot.get_me()

    assert me.id == 123456
    assert me.is_bot
    assert me.username == "test_123456_bot"


async def test_an_unknown_token_is_unauthorized_and_an_unknown_method_not_found(
        fake: FakeTelegram) -> None:
    stranger = fake.bot("999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    async with httpx.AsyncClient(base_url=fake.url) as client:
        answer = await client.post(f"/bot{TOKEN}/sendTelepathy")
    assert answer.status_code == 404
    assert answer.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_a_message_with_an_inline_keyboard_round_trips_and_is_listed(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)

    message = await bot.send_message(RESIDENT, "您的诉求已受理", reply_markup=keyboard("c:42:ack"))

    assert message.chat.id == RESIDENT and message.chat.type == "private"
    assert message.from_user is not None and message.from_user.id == bot.id
    assert message.text == "您的诉求已受理"
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "c:42:ack"
    [sent] = fake.sent(RESIDENT)
    assert sent.message_id == message.message_id
    assert sent.reply_markup == {"inline_keyboard": [[{"text": "button 0",
                                                       "callback_data": "c:42:ack"}]]}
    async with httpx.AsyncClient(base_url=fake.url) as client:
        listed = (await client.get("/_control/sent", params={"chat_id": RESIDENT})).json()
    assert [m["text"] for m in listed["result"]] == ["您的诉求已受理"]


async def test_message_ids_increase_per_chat_across_both_sides(
        fake: FakeTelegram, bot: Bot) -> None:
    start = fake.start_bot(RESIDENT)
    fake.start_bot(WORKER)

    first = await bot.send_message(RESIDENT, "一")
    second = await bot.send_message(RESIDENT, "二")
    other = await bot.send_message(WORKER, "一")

    assert start["message"]["message_id"] < first.message_id < second.message_id
    assert other.message_id == 2


async def test_a_reply_keyboard_is_recorded_but_not_echoed(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    markup = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="发送位置", request_location=True)]])

    message = await bot.send_message(RESIDENT, "请发送位置", reply_markup=markup)

    assert message.reply_markup is None
    assert fake.sent(RESIDENT)[0].reply_markup == {
        "keyboard": [[{"text": "发送位置", "request_location": True}]]}


async def test_html_markup_is_turned_into_the_text_a_reader_sees(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)

    message = await bot.send_message(RESIDENT, "<b>办结</b> &amp; 归档", parse_mode="HTML")

    assert message.text == "办结 & 归档"


@pytest.mark.parametrize(("text", "markup", "description"), [
    ("", None, "Bad Request: message text is empty"),
    ("x" * 4097, None, "Bad Request: message is too long"),
    # 22 CJK characters are 66 bytes: over the 64-byte limit though only 22 characters long.
    ("请确认", keyboard("确" * 22), "Bad Request: BUTTON_DATA_INVALID"),
    ("请确认", keyboard("x" * 65), "Bad Request: BUTTON_DATA_INVALID"),
])
async def test_invalid_messages_get_telegrams_exact_errors(
        fake: FakeTelegram, bot: Bot, text: str, markup: InlineKeyboardMarkup | None,
        description: str) -> None:
    fake.start_bot(RESIDENT)

    with pytest.raises(TelegramBadRequest) as error:
        await bot.send_message(RESIDENT, text, reply_markup=markup)

    assert error.value.message == description
    assert fake.sent(RESIDENT) == []


async def test_exactly_4096_characters_and_64_bytes_are_accepted(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)

    await bot.send_message(RESIDENT, "x" * 4096, reply_markup=keyboard("x" * 64))

    assert len(fake.sent(RESIDENT)) == 1


async def test_a_long_caption_is_refused(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)

    with pytest.raises(TelegramBadRequest) as error:
        await bot.send_photo(RESIDENT, BufferedInputFile(b"jpeg", "p.jpg"), caption="x" * 1025)

    assert error.value.message == "Bad Request: message caption is too long"


async def test_a_photo_upload_is_stored_and_downloadable(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)

    message = await bot.send_photo(RESIDENT, BufferedInputFile(b"jpeg bytes", "p.jpg"),
                                   caption="现场照片")

    assert message.photo is not None and message.caption == "现场照片"
    downloaded = await bot.download(message.photo[-1].file_id)
    assert downloaded is not None and downloaded.read() == b"jpeg bytes"
    assert fake.sent(RESIDENT)[0].photo == message.photo[-1].file_id


async def test_an_unknown_chat_is_not_found(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as error:
        await bot.send_message(31337, "有人吗")

    assert error.value.message == "Bad Request: chat not found"


async def test_a_user_who_never_started_the_bot_cannot_be_messaged(bot: Bot) -> None:
    with pytest.raises(TelegramForbiddenError) as error:
        await bot.send_message(WORKER, "新工单")

    assert error.value.message == CANT_INITIATE


async def test_a_user_who_blocked_the_bot_cannot_be_messaged(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(WORKER)
    await bot.send_message(WORKER, "新工单")

    update = fake.block(WORKER)

    assert update["my_chat_member"]["new_chat_member"]["status"] == "kicked"
    with pytest.raises(TelegramForbiddenError) as error:
        await bot.send_message(WORKER, "新工单")
    assert error.value.message == BLOCKED
    fake.start_bot(WORKER)
    await bot.send_message(WORKER, "欢迎回来")
    assert [m.text for m in fake.sent(WORKER)] == ["新工单", "欢迎回来"]


# --------------------------------------------------------------------------- edits and callbacks


async def test_an_edit_is_applied_and_an_identical_edit_is_not_modified(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    message = await bot.send_message(RESIDENT, "待受理", reply_markup=keyboard("c:1:ack"))

    edited = await bot.edit_message_text("已受理", chat_id=RESIDENT,
                                         message_id=message.message_id)

    assert not isinstance(edited, bool) and edited.text == "已受理"
    [sent] = fake.sent(RESIDENT)
    assert sent.text == "已受理" and sent.reply_markup is None
    assert [e["text"] for e in sent.edits] == ["待受理"]
    with pytest.raises(TelegramBadRequest) as error:
        await bot.edit_message_text("已受理", chat_id=RESIDENT, message_id=message.message_id)
    assert error.value.message == NOT_MODIFIED


async def test_an_identical_keyboard_edit_is_not_modified(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    message = await bot.send_message(RESIDENT, "待受理", reply_markup=keyboard("c:1:ack"))

    with pytest.raises(TelegramBadRequest) as error:
        await bot.edit_message_reply_markup(chat_id=RESIDENT, message_id=message.message_id,
                                            reply_markup=keyboard("c:1:ack"))

    assert error.value.message == NOT_MODIFIED


async def test_a_callback_query_comes_from_the_bots_message_and_is_answered_once(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(WORKER)
    message = await bot.send_message(WORKER, "新工单", reply_markup=keyboard("c:7:ack", "c:7:no"))

    update = fake.inject_callback_query(WORKER, message.message_id, "c:7:ack")

    query = update["callback_query"]
    assert query["message"]["message_id"] == message.message_id
    assert query["message"]["text"] == "新工单"
    assert await bot.answer_callback_query(query["id"], text="已签收")
    [answered] = fake.answered_callbacks()
    assert (answered.user_id, answered.data, answered.text) == (WORKER, "c:7:ack", "已签收")
    with pytest.raises(TelegramBadRequest) as error:
        await bot.answer_callback_query(query["id"])
    assert error.value.message == QUERY_TOO_OLD


async def test_a_callback_query_answered_too_late_is_too_old(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.clock = clock = ManualClock()
    fake.start_bot(WORKER)
    message = await bot.send_message(WORKER, "新工单", reply_markup=keyboard("c:7:ack"))
    query = fake.inject_callback_query(WORKER, message.message_id, "c:7:ack")
    clock.advance(16)

    with pytest.raises(TelegramBadRequest) as error:
        await bot.answer_callback_query(query["callback_query"]["id"])

    assert error.value.message == QUERY_TOO_OLD


async def test_a_callback_query_needs_a_button_the_bot_sent(fake: FakeTelegram) -> None:
    fake.start_bot(RESIDENT)

    with pytest.raises(ValueError, match="no message"):
        fake.inject_callback_query(RESIDENT, 1, "c:1:ack")


# --------------------------------------------------------------------------- limits and faults


async def test_an_injected_429_reaches_aiogram_as_retry_after(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(method="sendMessage", retry_after=7)

    with pytest.raises(TelegramRetryAfter) as error:
        await bot.send_message(RESIDENT, "通知")

    assert error.value.retry_after == 7
    assert "Too Many Requests: retry after 7" in error.value.message
    await bot.send_message(RESIDENT, "通知")
    assert [m.text for m in fake.sent(RESIDENT)] == ["通知"]


async def test_injected_faults_apply_only_to_their_method_and_count(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(2, method="sendMessage", error_code=502)

    await bot.get_me()
    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Bad Gateway"):
            await bot.send_message(RESIDENT, "通知")
    await bot.send_message(RESIDENT, "通知")


async def test_a_slow_answer_still_arrives(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(method="sendMessage", delay=0.05)

    message = await bot.send_message(RESIDENT, "稍等")

    assert message.text == "稍等"


async def test_a_dropped_connection_is_a_network_error(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(method="sendMessage", drop=True)

    with pytest.raises(TelegramNetworkError):
        await bot.send_message(RESIDENT, "通知")

    assert fake.sent(RESIDENT) == []
    await bot.send_message(RESIDENT, "通知")


async def test_a_chat_over_its_rate_limit_gets_429_and_others_do_not(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.clock = clock = ManualClock()
    fake.per_chat_per_second = 1
    fake.start_bot(RESIDENT)
    fake.start_bot(WORKER)
    await bot.send_message(RESIDENT, "一")

    with pytest.raises(TelegramRetryAfter) as error:
        await bot.send_message(RESIDENT, "二")
    await bot.send_message(WORKER, "一")
    clock.advance(1.0)
    await bot.send_message(RESIDENT, "二")

    assert error.value.retry_after == 1
    assert [m.text for m in fake.sent(RESIDENT)] == ["一", "二"]


async def test_the_global_and_group_limits_answer_429(fake: FakeTelegram, bot: Bot) -> None:
    fake.clock = ManualClock()
    fake.global_per_second = 2
    fake.per_group_per_minute = 1
    fake.start_bot(RESIDENT)
    fake.start_bot(WORKER)
    fake.group(-100200, "3号楼网格群")
    await bot.send_message(-100200, "通知")

    with pytest.raises(TelegramRetryAfter) as group_error:
        await bot.send_message(-100200, "再通知")
    await bot.send_message(RESIDENT, "一")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(WORKER, "一")

    assert group_error.value.retry_after == 60


# --------------------------------------------------------------------------- getUpdates


async def test_get_updates_confirms_with_offsets(fake: FakeTelegram, bot: Bot) -> None:
    ids = [fake.inject_text(RESIDENT, text)["update_id"] for text in ("一", "二", "三")]

    everything = await bot.get_updates()
    first_two = await bot.get_updates(limit=2)
    after_first = await bot.get_updates(offset=ids[0] + 1)
    last_only = await bot.get_updates(offset=-1)
    nothing_left = await bot.get_updates(offset=ids[-1] + 1)

    assert [u.update_id for u in everything] == ids
    assert [u.update_id for u in first_two] == ids[:2]
    assert [u.update_id for u in after_first] == ids[1:]
    assert [u.update_id for u in last_only] == ids[2:]
    assert nothing_left == []
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_a_long_poll_wakes_when_an_update_arrives(fake: FakeTelegram, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=20))
    await fake.wait_for(fake.polling)

    update = fake.inject_text(RESIDENT, "楼道灯坏了")

    # Far less than the poll's own 20 s: only an early wake-up can meet this deadline.
    updates = await asyncio.wait_for(poll, timeout=5)
    assert [u.update_id for u in updates] == [update["update_id"]]
    assert updates[0].message is not None and updates[0].message.text == "楼道灯坏了"


async def test_a_second_poller_ends_the_first_with_409(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=20))
    await fake.wait_for(fake.polling)

    second = asyncio.create_task(bot.get_updates(timeout=20))

    with pytest.raises(TelegramConflictError) as error:
        await asyncio.wait_for(first, timeout=5)
    assert error.value.message == CONFLICT_POLLER
    fake.inject_text(RESIDENT, "你好")
    assert len(await asyncio.wait_for(second, timeout=5)) == 1


async def test_get_updates_conflicts_while_a_webhook_is_set(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.inject_text(RESIDENT, "楼道灯坏了")
    # Nothing listens on port 9, so the update stays pending while the webhook is set.
    await bot.set_webhook("http://127.0.0.1:9/hook")

    with pytest.raises(TelegramConflictError) as error:
        await bot.get_updates()

    assert error.value.message == CONFLICT_WEBHOOK
    await fake.wait_for(fake.webhook_attempts)
    assert (await bot.get_webhook_info()).last_error_message == "Connection refused"
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == []


async def test_updates_expire_after_24_hours(fake: FakeTelegram, bot: Bot) -> None:
    fake.clock = clock = ManualClock()
    fake.inject_text(RESIDENT, "昨天的消息")

    clock.advance(24 * 3600 - 1)
    kept = await bot.get_updates()
    clock.advance(2)
    expired = await bot.get_updates()

    assert len(kept) == 1
    assert expired == []


async def test_live_location_edits_arrive_as_edited_messages(
        fake: FakeTelegram, bot: Bot) -> None:
    shared = fake.inject_location(RESIDENT, 31.2304, 121.4737, live_period=900)

    fake.inject_location_edit(RESIDENT, shared["message"]["message_id"], 31.2310, 121.4740)

    first, edit = await bot.get_updates()
    assert first.message is not None and first.message.location is not None
    assert edit.edited_message is not None and edit.edited_message.location is not None
    assert edit.edited_message.message_id == first.message.message_id
    assert edit.edited_message.location.latitude == pytest.approx(31.2310)


async def test_an_injected_photo_can_be_fetched_with_get_file(
        fake: FakeTelegram, bot: Bot) -> None:
    fake.inject_photo(RESIDENT, content=b"\xff\xd8photo\xff\xd9", caption="井盖松动")

    [update] = await bot.get_updates()

    assert update.message is not None and update.message.photo is not None
    assert update.message.caption == "井盖松动"
    largest = update.message.photo[-1]
    file = await bot.get_file(largest.file_id)
    assert file.file_size == len(b"\xff\xd8photo\xff\xd9") and file.file_path
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == b"\xff\xd8photo\xff\xd9"


async def test_get_file_refuses_files_over_20_mb_and_unknown_file_ids(
        fake: FakeTelegram, bot: Bot) -> None:
    at_limit = fake.inject_photo(RESIDENT, content=bytes(MAX_DOWNLOAD_BYTES))
    over = fake.inject_photo(RESIDENT, content=bytes(MAX_DOWNLOAD_BYTES + 1))

    file = await bot.get_file(at_limit["message"]["photo"][-1]["file_id"])
    assert file.file_size == MAX_DOWNLOAD_BYTES and file.file_path
    with pytest.raises(TelegramBadRequest) as error:
        await bot.get_file(over["message"]["photo"][-1]["file_id"])
    assert error.value.message == "Bad Request: file is too big"
    with pytest.raises(TelegramBadRequest) as error:
        await bot.get_file("AgADnot-a-file")
    assert error.value.message == "Bad Request: invalid file_id"


# --------------------------------------------------------------------------- webhook


async def test_a_failed_delivery_is_retried_and_blocks_its_chat(
        fake: FakeTelegram, bot: Bot) -> None:
    failed: set[int] = set()

    def fail_first_attempt(update: dict[str, Any]) -> Response:
        if update["update_id"] in failed:
            return Response(status_code=200)
        failed.add(update["update_id"])
        return Response(status_code=500)

    receiver = Receiver(fail_first_attempt)
    first = fake.inject_text(RESIDENT, "楼道灯坏了")["update_id"]
    second = fake.inject_text(RESIDENT, "三天了")["update_id"]
    with serve(receiver.app) as url:
        await bot.set_webhook(f"{url}/hook", secret_token="s3cret_token-1")
        await fake.wait_for(lambda: fake.webhook_info()["pending_update_count"] == 0)

    # The same update_id again, and the chat's next update only after it was acknowledged.
    assert receiver.update_ids() == [first, first, second, second]
    assert {secret for _, secret in receiver.deliveries} == {"s3cret_token-1"}
    attempts = fake.webhook_attempts()
    assert [(a.update_id, a.status) for a in attempts] == [
        (first, 500), (first, 200), (second, 500), (second, 200)]
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
    assert info.last_error_date is not None


async def test_a_chat_stuck_on_a_failing_update_does_not_block_other_chats(
        fake: FakeTelegram, bot: Bot) -> None:
    receiver = Receiver(lambda u: Response(status_code=500 if chat_of(u) == RESIDENT else 204))
    stuck = fake.inject_text(RESIDENT, "一")["update_id"]
    behind = fake.inject_text(RESIDENT, "二")["update_id"]
    other = fake.inject_text(WORKER, "收到")["update_id"]
    with serve(receiver.app) as url:
        await bot.set_webhook(f"{url}/hook", max_connections=2)
        await fake.wait_for(lambda: receiver.update_ids().count(stuck) >= 3
                            and other in receiver.update_ids())
        info = await bot.get_webhook_info()
        await bot.delete_webhook()

    assert behind not in receiver.update_ids()
    assert info.pending_update_count == 2
    assert info.max_connections == 2
    retries = [a.retry_in for a in fake.webhook_attempts() if a.update_id == stuck]
    assert retries[:3] == [0.0, 2.0, 4.0]


async def test_a_retry_after_header_from_the_webhook_sets_the_next_attempt(
        fake: FakeTelegram, bot: Bot) -> None:
    receiver = Receiver(lambda u: Response(status_code=429, headers={"Retry-After": "30"}))
    update_id = fake.inject_text(RESIDENT, "楼道灯坏了")["update_id"]
    with serve(receiver.app) as url:
        await bot.set_webhook(f"{url}/hook")
        await fake.wait_for(fake.webhook_attempts)
        await bot.delete_webhook()

    attempt = fake.webhook_attempts()[0]
    assert (attempt.update_id, attempt.status, attempt.retry_in) == (update_id, 429, 30.0)
    assert attempt.error == "Wrong response from the webhook: 429 Too Many Requests"


async def test_a_method_in_the_webhook_answer_is_executed(fake: FakeTelegram, bot: Bot) -> None:
    receiver = Receiver(lambda u: JSONResponse(
        {"method": "sendMessage", "chat_id": chat_of(u), "text": "已收到您的诉求"}))
    fake.inject_text(RESIDENT, "楼道灯坏了")
    with serve(receiver.app) as url:
        await bot.set_webhook(f"{url}/hook")
        await fake.wait_for(lambda: fake.sent(RESIDENT))

    assert [m.text for m in fake.sent(RESIDENT)] == ["已收到您的诉求"]
    assert fake.webhook_attempts()[0].executed_method == "sendMessage"


async def test_a_webhook_secret_with_forbidden_characters_is_refused(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest) as error:
        await bot.set_webhook("http://127.0.0.1:9/hook", secret_token="a+b/c=")

    assert error.value.message == "Bad Request: secret token contains unallowed characters"


# --------------------------------------------------------------------------- raw HTTP and control


async def test_parameters_arrive_as_query_json_or_form_and_methods_ignore_case(
        fake: FakeTelegram) -> None:
    fake.start_bot(RESIDENT)
    markup = {"inline_keyboard": [[{"text": "好", "callback_data": "ok"}]]}
    async with httpx.AsyncClient(base_url=f"{fake.url}/bot{TOKEN}") as client:
        by_query = await client.get("/SENDMESSAGE", params={"chat_id": RESIDENT, "text": "一"})
        by_json = await client.post("/sendMessage", json={"chat_id": RESIDENT, "text": "二",
                                                          "reply_markup": markup})
        by_form = await client.post("/sendmessage", data={"chat_id": str(RESIDENT),
                                                          "text": "三"})

    assert [r.json()["ok"] for r in (by_query, by_json, by_form)] == [True, True, True]
    assert by_json.json()["result"]["reply_markup"] == markup
    assert [m.text for m in fake.sent(RESIDENT)] == ["一", "二", "三"]


async def test_the_control_api_over_http_plays_the_users_side(
        fake: FakeTelegram, bot: Bot) -> None:
    async with httpx.AsyncClient(base_url=f"{fake.url}/_control") as control:
        await control.post("/user", json={"id": 3003, "first_name": "赵敏"})
        started = (await control.post("/start_bot", json={"user_id": 3003,
                                                          "payload": "grid-7"})).json()
        said = (await control.post("/inject_text", json={"user_id": 3003,
                                                         "text": "电梯坏了"})).json()
        await bot.send_message(3003, "已派单")
        sent = (await control.get("/sent", params={"chat_id": 3003})).json()
        await control.post("/reset")
        after_reset = (await control.get("/pending_updates")).json()

    assert started["result"]["message"]["text"] == "/start grid-7"
    assert said["result"]["update_id"] == started["result"]["update_id"] + 1
    assert [m["text"] for m in sent["result"]] == ["已派单"]
    assert after_reset["result"] == []


async def test_waiting_without_the_condition_ends_at_the_deadline(fake: FakeTelegram) -> None:
    with pytest.raises(TimeoutError):
        await fake.wait_for(lambda: fake.sent(RESIDENT), timeout=0.05)
    with pytest.raises(TimeoutError):
        fake.wait_for_sync(lambda: fake.sent(RESIDENT), timeout=0.05)


# --------------------------------------------------------------------------- broken servers


async def test_an_html_error_page_is_served_as_a_proxy_would(fake: FakeTelegram) -> None:
    fake.fail_next(None, method="setMyCommands", fault="html", error_code=404)
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False) as client:
        for _ in range(2):  # count=None: every call until reset()
            answer = await client.post(f"/bot{TOKEN}/setMyCommands", json={"commands": []})
            assert answer.status_code == 404
            assert answer.headers["content-type"].startswith("text/html")
            assert "<h1>404 Not Found</h1>" in answer.text
        fake.fail_next(method="getMe", fault="html")
        assert (await client.post(f"/bot{TOKEN}/getMe")).status_code == 500
        assert (await client.post(f"/bot{TOKEN}/getMe")).json()["ok"] is True
    assert (fake.requests("setMyCommands"), fake.requests("getMe"), fake.requests()) == (2, 2, 4)


async def test_a_truncated_answer_follows_a_call_that_did_happen(fake: FakeTelegram) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(method="sendMessage", fault="truncated")
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False) as client:
        answer = await client.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": RESIDENT, "text": "通知"})

    assert answer.status_code == 200 and int(answer.headers["content-length"]) == len(answer.content)
    assert answer.content.startswith(b'{"ok": true')
    with pytest.raises(ValueError):
        answer.json()
    assert [m.text for m in fake.sent(RESIDENT)] == ["通知"]


async def test_a_reset_closes_the_connection_half_way_through_the_body(fake: FakeTelegram, bot: Bot) -> None:
    fake.start_bot(RESIDENT)
    fake.fail_next(method="sendMessage", fault="reset")
    async with httpx.AsyncClient(base_url=fake.url, trust_env=False) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
            await client.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": RESIDENT, "text": "一"})
    fake.fail_next(method="sendMessage", fault="reset")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(RESIDENT, "二")

    assert [m.text for m in fake.sent(RESIDENT)] == ["一", "二"]  # the calls happened all the same


async def test_a_long_poll_can_be_answered_at_once(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next(None, method="getUpdates", fault="instant")

    # Far less than the poll's own 20 s: only a server ignoring the timeout can meet this.
    for _ in range(3):
        assert await asyncio.wait_for(bot.get_updates(timeout=20), timeout=5) == []
    assert fake.requests("getUpdates") == 3
