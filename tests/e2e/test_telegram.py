"""The Telegram channel end to end: the real aiogram Bot, the griddesk app and the loopback Bot API.

Updates are played on the fake's side (a user presses Start, writes, taps a button); the fake
delivers them to the app's webhook (or the app polls for them); the tests wait for what each
user sees in their chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import Services, build_app, build_services
from bot.channels.base import Incoming
from bot.settings import Settings
from handlers.notify import ensure_identity
from handlers.registry import staff_invites
from storage import media, outbox
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.conftest import MONDAY_10AM, _sqlite_template
from tests.fakes.classifier import KeywordClassifier
from tests.fakes.serving import ServedApp
from tests.fakes.telegram_bot_api import FakeTelegram, SentMessage
from tests.fakes.wechat import tiny_png

TOKEN = "123456:TEST"
SECRET = "hook-Secret_42"
USERNAME = "test_123456_bot"
RESIDENT, WORKER, NEIGHBOUR = 1001, 2002, 3003
NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
_IDS = itertools.count(50_001)


class RunningClock:
    """Monday 10:00 in Beijing, moving with real time: deadlines are stable, and the outbox's
    waits (a 429's retry_after, the per-chat pace) do end."""

    def __init__(self, start: dt.datetime) -> None:
        self.start = start
        self.origin = time.monotonic()

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=time.monotonic() - self.origin)


class App:
    def __init__(self, fake: FakeTelegram, database_url: str, *, webhook: bool = True) -> None:
        self.fake = fake
        settings = Settings(
            database_url=database_url, secret_key="e2e-secret", demo=True, send_idle_seconds=0.05,
            telegram_bot_token=TOKEN, telegram_api_base=fake.url, telegram_bot_username=USERNAME,
            telegram_webhook_url="http://127.0.0.1:9/telegram/webhook" if webhook else None,
            telegram_webhook_secret=SECRET, telegram_per_chat_per_second=1000,
            telegram_global_per_second=1000, telegram_poll_timeout=2,
        )
        self.services: Services = build_services(settings, clock=RunningClock(MONDAY_10AM),
                                                 classifier=KeywordClassifier())
        self.served = ServedApp(build_app(self.services))
        self.url = self.served.url
        if webhook:
            # The port is known once bound; the app sets its webhook on start.
            self.services.settings.telegram_webhook_url = f"{self.url}/telegram/webhook"

    def start(self) -> App:
        self.served.start()
        return self

    def stop(self) -> None:
        self.served.stop()
        self.services.engine.dispose()

    def count(self, table: Any, *where: Any) -> int:
        with UnitOfWork(self.services.engine) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(table).where(*where)) or 0)

    def invite(self, person: str) -> str:
        with UnitOfWork(self.services.engine) as uow:
            token = staff_invites.issue(uow.session, person, self.services.clock.now(), dt.timedelta(hours=1))
            uow.commit()
        return token


@pytest.fixture(scope="module")
def served_fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(tokens=[TOKEN], time_scale=0.01) as fake:
        yield fake


@pytest.fixture
def fake(served_fake: FakeTelegram) -> FakeTelegram:
    served_fake.reset()
    served_fake.per_chat_per_second = served_fake.per_group_per_minute = None
    served_fake.global_per_second = None
    served_fake.user(RESIDENT, "王秀英")
    served_fake.user(WORKER, "张丽")
    served_fake.user(NEIGHBOUR, "陈明")
    return served_fake


def running(fake: FakeTelegram, database_url: str, *, webhook: bool = True) -> Iterator[App]:
    app = App(fake, database_url, webhook=webhook).start()
    try:
        if webhook:
            fake.wait_for_sync(lambda: fake.webhook_info()["url"] == f"{app.url}/telegram/webhook")
        yield app
    finally:
        app.stop()


@pytest.fixture
def app(fake: FakeTelegram, database_url: str) -> Iterator[App]:
    yield from running(fake, database_url)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One app on SQLite for the tests that need no database of their own; each of them uses
    Telegram users of its own (`Users`), so they do not see one another."""
    path = tmp_path_factory.mktemp("telegram") / "griddesk.db"
    shutil.copy(_sqlite_template(tmp_path_factory), path)
    with FakeTelegram(tokens=[TOKEN], time_scale=0.01) as own_fake:
        yield from running(own_fake, f"sqlite:///{path}")


class Users:
    """Fresh Telegram user ids for one test on the shared app."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.fake = fake

    def new(self, name: str = "居民", language_code: str = "zh-hans") -> int:
        user_id = next(_IDS)
        self.fake.user(user_id, name, language_code=language_code)
        return user_id


@pytest.fixture
def users(shared: App) -> Users:
    shared.fake.per_chat_per_second = None
    return Users(shared.fake)


def seen(fake: FakeTelegram, chat_id: int, needle: str, timeout: float = 10.0) -> SentMessage:
    """The first message in the chat containing `needle`, waiting for it."""
    def find() -> SentMessage | None:
        return next((m for m in fake.sent(chat_id) if needle in (m.text or "")), None)
    try:
        found: SentMessage = fake.wait_for_sync(find, timeout=timeout)
    except TimeoutError:
        texts = [m.text for m in fake.sent(chat_id)]
        raise AssertionError(f"chat {chat_id} never saw {needle!r}; it saw {texts}") from None
    return found


def newer(fake: FakeTelegram, chat_id: int, after: SentMessage, needle: str = "",
          timeout: float = 10.0) -> SentMessage:
    def find() -> SentMessage | None:
        return next((m for m in fake.sent(chat_id)
                     if m.message_id > after.message_id and needle in (m.text or "")), None)
    try:
        found: SentMessage = fake.wait_for_sync(find, timeout=timeout)
    except TimeoutError:
        texts = [m.text for m in fake.sent(chat_id) if m.message_id > after.message_id]
        raise AssertionError(f"chat {chat_id} saw no new {needle!r}; it saw {texts}") from None
    return found


def button(message: SentMessage, label: str) -> str:
    rows = (message.reply_markup or {}).get("inline_keyboard", [])
    for row in rows:
        for b in row:
            if b["text"] == label:
                return str(b["callback_data"])
    raise AssertionError(f"no button {label!r} in {rows}")


def tap(fake: FakeTelegram, user: int, message: SentMessage, label: str) -> str:
    data = button(message, label)
    fake.inject_callback_query(user, message.message_id, data)
    return data


# --------------------------------------------------------------------------- the whole journey


def test_resident_and_grid_worker_handle_a_case_entirely_in_telegram(app: App, fake: FakeTelegram) -> None:
    # The grid worker binds once with the invite link printed by `griddesk staff invite`.
    fake.start_bot(WORKER, f"s_{app.invite('zhang_li')}")
    bound = seen(fake, WORKER, "绑定成功")
    assert "张丽" in (bound.text or "")

    # The resident scans the building's grid sign: /start b_<building code>.
    fake.start_bot(RESIDENT, "b_ZN-B03")
    welcome = seen(fake, RESIDENT, "已登记")
    assert "中南小区3栋" in (welcome.text or "") and "张丽" in (welcome.text or "")
    fake.inject_text(RESIDENT, "/grid")
    grid = newer(fake, RESIDENT, welcome, "网格指示牌")

    report = fake.inject_text(RESIDENT, "楼道灯坏了三天了")
    opened = newer(fake, RESIDENT, grid, "张丽")
    found = NUMBER.search(opened.text or "")
    assert found, opened.text
    number = found.group(0)

    # The grid worker's chat receives the case with its buttons (and no picture: none was sent).
    card = seen(fake, WORKER, number)
    assert "中南小区3栋" in (card.text or "")
    assert [m.photo for m in fake.sent(WORKER) if m.photo] == []
    tap(fake, WORKER, card, "签收")
    fake.wait_for_sync(lambda: len(fake.answered_callbacks()) == 1)
    told = newer(fake, RESIDENT, opened, "已由")
    assert "张丽" in (told.text or "")

    # Reply: the bot asks for the text with ForceReply, and the resident receives it.
    tap(fake, WORKER, card, "答复")
    prompt = newer(fake, WORKER, card, "答复")
    assert prompt.reply_markup == {"force_reply": True}
    fake.inject_text(WORKER, "明天上午电工上门更换")
    replied = newer(fake, RESIDENT, told, "电工上门")

    tap(fake, WORKER, card, "办结")
    asked = newer(fake, WORKER, prompt, "办理结果")
    assert asked.reply_markup == {"force_reply": True}
    fake.inject_text(WORKER, "灯泡已更换")
    resolved = newer(fake, RESIDENT, replied, "已办结")

    # The resident rates with a button.
    tap(fake, RESIDENT, resolved, "满意")
    thanked = newer(fake, RESIDENT, resolved, "谢谢")
    assert len(fake.answered_callbacks()) == 4

    # Telegram redelivers the report (a lost 200), and a poison update arrives: the first does
    # nothing again, the second is answered 200 and set aside, and the chat carries on.
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    poison = {"update_id": report["update_id"] + 1000,
              "message": {"message_id": 99, "chat": {"id": RESIDENT, "type": "private"}}}
    with httpx.Client(base_url=app.url) as client:
        for _ in range(3):
            assert client.post("/telegram/webhook", json=report, headers=headers).status_code == 200
        assert client.post("/telegram/webhook", json=poison, headers=headers).status_code == 200
    fake.inject_text(RESIDENT, "/status")
    newer(fake, RESIDENT, thanked, "您最近的工单")
    assert app.count(t.Inbound, t.Inbound.state == "failed") == 1
    assert app.count(t.Case) == 1
    with UnitOfWork(app.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        assert (case.rating, case.channel) == ("satisfied", "telegram")
    assert len([m for m in fake.sent(RESIDENT) if "已受理" in (m.text or "")]) == 1


def test_a_wrong_secret_is_refused_and_changes_nothing(shared: App, users: Users) -> None:
    someone = users.new()
    update = {"update_id": 10**9 + someone, "message": {
        "message_id": 1, "date": 1795000000, "text": "楼道灯坏了",
        "chat": {"id": someone, "type": "private", "first_name": "王"},
        "from": {"id": someone, "is_bot": False, "first_name": "王"}}}
    stored = shared.count(t.Inbound)
    with httpx.Client(base_url=shared.url) as client:
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}):
            assert client.post("/telegram/webhook", json=update, headers=headers).status_code in (401, 403)
        bad = client.post("/telegram/webhook", content=b"{nope", headers={
            "X-Telegram-Bot-Api-Secret-Token": SECRET, "content-type": "application/json"})
        assert bad.status_code == 400
    assert shared.count(t.Inbound) == stored
    assert shared.count(t.Identity, t.Identity.address == str(someone)) == 0
    assert shared.fake.sent(someone) == []


# --------------------------------------------------------------------------- sending


def notices(app: App, chat_id: int, texts: list[str]) -> None:
    with UnitOfWork(app.services.engine) as uow:
        ident = uow.session.scalars(select(t.Identity).where(
            t.Identity.channel == "telegram", t.Identity.address == str(chat_id))).first()
        for text in texts:
            outbox.enqueue(uow.session, channel="telegram", address=str(chat_id), text=text,
                           now=app.services.clock.now(), identity_id=ident.id if ident else None,
                           resident_id=ident.resident_id if ident else None)
        uow.commit()


def test_a_burst_of_notices_under_rate_limits_arrives_complete_in_order_once(
        shared: App, users: Users) -> None:
    fake, someone = shared.fake, users.new()
    fake.start_bot(someone)
    seen(fake, someone, "居委会")
    fake.per_chat_per_second = 150  # past this Telegram answers 429 with retry_after
    fake.fail_next(1, method="sendMessage", retry_after=1)
    texts = [f"通知 {i:03d}" for i in range(200)]
    notices(shared, someone, texts)

    def arrived() -> list[str]:
        return [m.text or "" for m in fake.sent(someone) if (m.text or "").startswith("通知")]
    fake.wait_for_sync(lambda: len(arrived()) >= 200, timeout=40)
    assert arrived() == texts
    fake.wait_for_sync(lambda: shared.count(t.Outbox, t.Outbox.address == str(someone),
                                            t.Outbox.state != "sent") == 0)
    assert arrived() == texts


def test_a_blocked_user_does_not_stall_others_and_is_shown_unreachable(shared: App, users: Users) -> None:
    fake = shared.fake
    blocker, other = users.new(), users.new()
    for user in (blocker, other):
        fake.start_bot(user, "b_ZN-B01")
        seen(fake, user, "已登记")
    fake.block(blocker)
    for i in range(5):
        notices(shared, blocker, [f"通知 {i}"])
        notices(shared, other, [f"通知 {i}"])

    fake.wait_for_sync(lambda: len([m for m in fake.sent(other) if "通知" in (m.text or "")]) == 5)
    fake.wait_for_sync(lambda: shared.count(t.Outbox, t.Outbox.address == str(blocker),
                                            t.Outbox.state == "unreachable") == 5)
    assert not [m for m in fake.sent(blocker) if "通知" in (m.text or "")]
    services = shared.services
    with UnitOfWork(services.engine) as uow:
        ident = uow.session.scalars(select(t.Identity).where(t.Identity.address == str(blocker))).one()
        assert not ident.reachable
        director = uow.session.scalars(select(t.Person).where(t.Person.code == "lin_hui")).one()
        ensure_identity(uow.session, "web", "person:lin_hui", services.clock.now(), person=director)
        uow.commit()
    # The director's list of undelivered notices shows the account that cannot be reached.
    replies = asyncio.run(services.pipeline.handle(Incoming("web", "person:lin_hui", text="/dead")))
    assert "［telegram］" in replies[0].text


# --------------------------------------------------------------------------- languages and invites


def test_replies_follow_the_users_language(shared: App, users: Users) -> None:
    fake = shared.fake
    hant, en = users.new("陳", "zh-hant"), users.new("Chan", "en")
    fake.start_bot(hant, "b_ZN-B01")
    fake.start_bot(en, "b_ZN-B01")
    seen(fake, hant, "已登記")
    seen(fake, en, "Registered")
    fake.inject_text(en, "/grid")
    seen(fake, en, "Grid sign")


def test_staff_invites_bind_once(shared: App, users: Users) -> None:
    fake = shared.fake
    worker, stranger, other = users.new("王芳"), users.new(), users.new()
    token = shared.invite("wang_fang")
    fake.start_bot(worker, f"s_{token}")
    seen(fake, worker, "绑定成功")
    fake.start_bot(stranger, f"s_{token}")
    seen(fake, stranger, "已经用过")
    fake.start_bot(other, "s_not-a-token")
    seen(fake, other, "无效")
    fake.inject_text(worker, "/mine")
    seen(fake, worker, "待办工单")
    fake.start_bot(worker)
    seen(fake, worker, "/mine")  # a known user's plain /start shows the help
    assert shared.count(t.Identity, t.Identity.person_id.is_not(None), t.Identity.channel == "telegram",
                        t.Identity.address.in_([str(worker), str(stranger), str(other)])) == 1


# --------------------------------------------------------------------------- polling and restarts


def test_long_polling_serves_messages_photos_and_locations(fake: FakeTelegram, sqlite_url: str) -> None:
    for app in running(fake, sqlite_url, webhook=False):
        fake.wait_for_sync(lambda: fake.polling())
        fake.start_bot(RESIDENT)
        prompt = seen(fake, RESIDENT, "居委会")
        assert prompt.reply_markup and prompt.reply_markup["inline_keyboard"]
        # Sharing a location places the resident in the nearest building.
        fake.inject_location(RESIDENT, 26.5694, 106.7175)
        seen(fake, RESIDENT, "中南小区3栋")
        update = fake.inject_photo(RESIDENT, caption="楼道灯坏了")
        seen(fake, RESIDENT, "ZN-")
        [(kind, data, content_type)] = kept_photos(app)
        assert (kind, data, content_type) == ("photo", held(fake, largest(update)), "image/jpeg")


def test_a_bot_api_server_without_set_my_commands_is_still_polled_and_health_says_so(
        fake: FakeTelegram, sqlite_url: str) -> None:
    # A server (or a proxy) that lacks the method answers 404 with an HTML page, not Bot API JSON.
    fake.fail_next(None, method="setMyCommands", fault="html", error_code=404)
    for app in running(fake, sqlite_url, webhook=False):
        fake.wait_for_sync(lambda: fake.polling())
        fake.start_bot(RESIDENT)
        seen(fake, RESIDENT, "居委会")
        health = httpx.get(f"{app.url}/health", timeout=10, trust_env=False)
        assert health.status_code == 200
        telegram = health.json()["channels"]["telegram"]
        assert telegram["running"] and telegram["receiving"]["mode"] == "polling"
        assert telegram["receiving"]["last_ok_at"] and telegram["sending"]["last_ok_at"]


def test_stored_updates_are_handled_after_a_restart(fake: FakeTelegram, sqlite_url: str) -> None:
    before = App(fake, sqlite_url)
    update = fake.start_bot(RESIDENT, "b_ZN-B02")
    with UnitOfWork(before.services.engine) as uow:
        uow.session.add(t.Inbound(channel="telegram", key=str(update["update_id"]), payload=update,
                                  received_at=before.services.clock.now()))
        uow.commit()
    before.stop()
    for app in running(fake, sqlite_url):
        seen(fake, RESIDENT, "中南小区2栋")
        fake.wait_for_sync(lambda app=app: app.count(t.Inbound, t.Inbound.state == "done") >= 1)
    # The same update, also delivered by Telegram after the restart, was handled once.
    assert len([m for m in fake.sent(RESIDENT) if "中南小区2栋" in (m.text or "")]) == 1


# --------------------------------------------------------------------------- photos


def largest(update: dict[str, Any]) -> str:
    return str(update["message"]["photo"][-1]["file_id"])


def held(fake: FakeTelegram, file_id: str) -> bytes:
    """The bytes the Bot API holds for a file, fetched as a bot would: getFile, then the file
    URL."""
    with httpx.Client(base_url=fake.url, trust_env=False) as client:
        answer = client.get(f"/bot{TOKEN}/getFile", params={"file_id": file_id}).json()
        assert answer["ok"], answer
        downloaded = client.get(f"/file/bot{TOKEN}/{answer['result']['file_path']}")
        downloaded.raise_for_status()
        return downloaded.content


def kept_photos(app: App, number: str | None = None) -> list[tuple[str, bytes | None, str | None]]:
    """(kind, kept bytes or None, content type or None) of the attachments (of one case),
    oldest first."""
    found: list[tuple[str, bytes | None, str | None]] = []
    with UnitOfWork(app.services.engine) as uow:
        query = select(t.Attachment).order_by(t.Attachment.id)
        if number is not None:
            query = (query.join(t.Case, t.Case.id == t.Attachment.case_id)
                     .where(t.Case.number == number))
        for att in uow.session.scalars(query):
            media_id = media.id_in(att.ref)
            row = media.get(uow.session, media_id) if media_id is not None else None
            found.append((att.kind, row.data if row else None, row.content_type if row else None))
    return found


def attachment_refs(app: App, number: str) -> list[str]:
    with UnitOfWork(app.services.engine) as uow:
        return list(uow.session.scalars(
            select(t.Attachment.ref).join(t.Case, t.Case.id == t.Attachment.case_id)
            .where(t.Case.number == number).order_by(t.Attachment.id)))


def filed(fake: FakeTelegram, chat_id: int) -> str:
    """The number of the case the resident was last told is filed."""
    told = [m for m in fake.sent(chat_id) if "已受理" in (m.text or "")]
    assert told, [m.text for m in fake.sent(chat_id)]
    found = NUMBER.search(told[-1].text or "")
    assert found, told[-1].text
    return found.group(0)


@contextlib.contextmanager
def web_staff(app: App, person: str) -> Iterator[httpx.Client]:
    """A member of staff signed in to the web chat."""
    with httpx.Client(base_url=app.url, timeout=10, trust_env=False) as client:
        client.post("/api/demo/persona", json={"who": f"person:{person}"}).raise_for_status()
        yield client


def test_a_photo_is_kept_and_the_grid_worker_sees_it(app: App, fake: FakeTelegram) -> None:
    fake.start_bot(WORKER, f"s_{app.invite('zhang_li')}")
    seen(fake, WORKER, "绑定成功")
    fake.start_bot(RESIDENT, "b_ZN-B03")
    welcome = seen(fake, RESIDENT, "已登记")

    # The description follows at once, while the photo is still being fetched: it is read only
    # once the photo is kept.
    fake.fail_next(1, method="getFile", delay=1.0)
    photo = fake.inject_photo(RESIDENT)
    fake.inject_text(RESIDENT, "楼道灯坏了三天了")
    asked = newer(fake, RESIDENT, welcome, "说明")
    newer(fake, RESIDENT, asked, "已受理")
    number = filed(fake, RESIDENT)

    data = held(fake, largest(photo))
    assert kept_photos(app, number) == [("photo", data, "image/jpeg")]
    [ref] = attachment_refs(app, number)
    media_id = media.id_in(ref)
    assert media_id is not None

    # On Telegram the grid worker gets the photo itself, the same bytes, just before the card.
    card = seen(fake, WORKER, number)
    assert "居民发来：照片 1 张" in (card.text or "")
    [sent_photo] = [m for m in fake.sent(WORKER) if m.photo]
    assert sent_photo.message_id == card.message_id - 1 and sent_photo.photo is not None
    assert held(fake, sent_photo.photo) == data

    # The grid worker opens it in the web chat.
    with web_staff(app, "zhang_li") as worker:
        listed = worker.get(f"/api/cases/{number}/attachments")
        assert listed.status_code == 200
        assert [(a["kind"], a["url"]) for a in listed.json()] == [("photo", f"/media/{media_id}")]
        got = worker.get(f"/media/{media_id}")
        assert (got.status_code, got.content) == (200, data)
        assert got.headers["content-type"] == "image/jpeg"

    # Telegram redelivers the photo (a lost 200), and the same picture comes again as a new
    # message: the bytes are stored once.
    with httpx.Client(base_url=app.url, trust_env=False) as client:
        again = client.post("/telegram/webhook", json=photo,
                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        assert again.status_code == 200
    second = fake.inject_photo(RESIDENT)
    assert largest(second) != largest(photo)
    fake.inject_text(RESIDENT, "楼道灯还是坏的")
    fake.wait_for_sync(
        lambda: len([m for m in fake.sent(RESIDENT) if "已受理" in (m.text or "")]) == 2)
    later = filed(fake, RESIDENT)
    assert later != number
    assert attachment_refs(app, later) == [ref]
    assert app.count(t.Media) == 1


def test_a_picture_sent_as_a_file_and_a_voice_note_are_kept(app: App, fake: FakeTelegram) -> None:
    fake.start_bot(WORKER, f"s_{app.invite('zhang_li')}")
    seen(fake, WORKER, "绑定成功")
    fake.start_bot(RESIDENT, "b_ZN-B03")
    welcome = seen(fake, RESIDENT, "已登记")
    picture = tiny_png((10, 200, 90))
    fake.inject_document(RESIDENT, picture, "IMG_2041.PNG", "image/png", caption="井盖丢了，很危险")
    newer(fake, RESIDENT, welcome, "已受理")
    number = filed(fake, RESIDENT)
    # Kept byte for byte, as the PNG it is (Telegram does not re-encode files).
    assert kept_photos(app, number) == [("photo", picture, "image/png")]

    # A voice note is kept too; it cannot be read, so a sentence is asked for and the two go
    # together as the next case.
    recording = b"OggS" + bytes(range(60))
    fake.inject_voice(RESIDENT, recording)
    seen(fake, RESIDENT, "语音暂时转不成文字")
    fake.inject_text(RESIDENT, "3单元门口的路灯不亮了")
    fake.wait_for_sync(lambda: len([m for m in fake.sent(RESIDENT) if "已受理" in (m.text or "")]) == 2)
    voiced = filed(fake, RESIDENT)
    assert voiced != number and kept_photos(app, voiced) == [("voice", recording, "audio/ogg")]
    # The grid worker on Telegram gets the picture as a photo and the recording as a voice
    # message, each just before its case's card.
    card = seen(fake, WORKER, voiced)
    [voice] = [m for m in fake.sent(WORKER) if m.voice]
    assert voice.message_id == card.message_id - 1 and voice.voice is not None
    assert held(fake, voice.voice) == recording
    [photo] = [m for m in fake.sent(WORKER) if m.photo]
    assert photo.photo is not None and held(fake, photo.photo) == picture

    # Any other file is still answered with what we can read, and files nothing.
    fake.inject_document(RESIDENT, b"%PDF-1.4", "notice.pdf", "application/pdf")
    seen(fake, RESIDENT, "只能处理文字、照片、语音和位置")
    assert app.count(t.Case) == 2


def test_a_photo_gone_before_it_is_sent_leaves_the_card_to_arrive_alone(
        app: App, fake: FakeTelegram) -> None:
    fake.start_bot(WORKER, f"s_{app.invite('zhang_li')}")
    seen(fake, WORKER, "绑定成功")
    fake.start_bot(RESIDENT, "b_ZN-B03")
    welcome = seen(fake, RESIDENT, "已登记")

    # Telegram holds the worker's chat at the photo (a 429) and meanwhile the kept photo is
    # removed: the retry finds no bytes and sends the card alone, once.
    fake.fail_next(1, method="sendPhoto", retry_after=2)
    fake.inject_photo(RESIDENT)
    fake.inject_text(RESIDENT, "楼道灯坏了三天了")
    newer(fake, RESIDENT, welcome, "已受理")
    number = filed(fake, RESIDENT)

    def card_row() -> t.Outbox | None:
        with UnitOfWork(app.services.engine) as uow:
            return uow.session.scalars(
                select(t.Outbox).join(t.Case, t.Case.id == t.Outbox.case_id)
                .where(t.Case.number == number, t.Outbox.address == str(WORKER))).first()

    held_back = fake.wait_for_sync(lambda: (row := card_row()) is not None
                                   and row.next_attempt_at > app.services.clock.now() + dt.timedelta(seconds=0.5)
                                   and row)
    assert held_back.state == "pending" and held_back.media
    with UnitOfWork(app.services.engine) as uow:
        for kept in uow.session.scalars(select(t.Media)):
            uow.session.delete(kept)
        uow.commit()

    card = seen(fake, WORKER, number)
    assert "居民发来：照片 1 张" in (card.text or "")
    fake.wait_for_sync(lambda: (row := card_row()) is not None and row.state == "sent")
    assert [m for m in fake.sent(WORKER) if m.photo] == []
    assert len([m for m in fake.sent(WORKER) if number in (m.text or "")]) == 1
    sent = card_row()
    assert sent is not None and sent.attempts == 1


def test_a_photo_the_bot_api_will_not_hand_over_still_files_the_case_with_its_file_id(
        shared: App, users: Users) -> None:
    fake = shared.fake
    too_big, cut_off = users.new(), users.new()
    # getFile refuses files over 20 MB ("file is too big"); a dropped connection is a network
    # failure. Either way the report goes on with the photo's file_id.
    over_the_limit = b"\xff\xd8" + bytes(20 * 1024 * 1024)
    for user, content, drop in ((too_big, over_the_limit, False), (cut_off, None, True)):
        fake.start_bot(user, "b_ZN-B03")
        seen(fake, user, "已登记")
        if drop:
            fake.fail_next(1, method="getFile", drop=True)
        update = fake.inject_photo(user, content=content)
        fake.inject_text(user, "楼道灯坏了")
        seen(fake, user, "已受理")
        number = filed(fake, user)
        assert attachment_refs(shared, number) == [largest(update)]
        assert kept_photos(shared, number) == [("photo", None, None)]
        with web_staff(shared, "zhang_li") as worker:
            listed = worker.get(f"/api/cases/{number}/attachments").json()
            assert [(a["kind"], a["url"]) for a in listed] == [("photo", None)]
