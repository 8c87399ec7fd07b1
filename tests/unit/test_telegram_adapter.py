"""The Telegram adapter translates updates into channel-neutral values and back, and nothing more."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.types import CallbackQuery, ForceReply, InlineKeyboardMarkup, Message

from bot.channels.base import Attachment, Button, Reply
from bot.channels.telegram import (
    MAX_TEXT,
    content_type_of,
    outbox_buttons,
    reply_markup,
    send_method,
    split_text,
    translate_callback,
    translate_message,
    utf16_len,
)

USER = {"id": 1001, "is_bot": False, "first_name": "王", "language_code": "zh-hant"}
PRIVATE = {"id": 1001, "type": "private", "first_name": "王"}


def message(**content: Any) -> Message:
    data = {"message_id": 5, "date": 1795000000, "chat": PRIVATE, "from": USER, **content}
    return Message.model_validate(data)


@pytest.mark.parametrize(("text", "action", "invite", "plain"), [
    ("/start b_ZN-B03", "bind:ZN-B03", None, False),
    ("/start s_AbC-12_x", None, "AbC-12_x", False),
    ("/start", None, None, True),
    ("/start@test_123456_bot", None, None, True),
])
def test_start_payloads(text: str, action: str | None, invite: str | None, plain: bool) -> None:
    translated = translate_message(message(text=text))
    assert translated is not None
    assert translated.invite == invite and translated.plain_start == plain
    if action is not None:
        assert translated.incoming is not None and translated.incoming.action == action


def test_text_and_commands_pass_through_with_the_language() -> None:
    for text in ("楼道灯坏了", "/status ZN-20261123-0001", "/agenda"):
        translated = translate_message(message(text=text))
        assert translated is not None and translated.incoming is not None
        assert translated.incoming.text == text and translated.incoming.action is None
        assert (translated.incoming.channel, translated.incoming.address) == ("telegram", "1001")
        assert translated.incoming.language_hint == "zh-hant"


def test_photo_keeps_the_largest_size_and_the_caption() -> None:
    sizes = [{"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60},
             {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 960}]
    translated = translate_message(message(photo=sizes, caption="垃圾堆在楼道"))
    assert translated is not None and translated.incoming is not None
    assert translated.incoming.text == "垃圾堆在楼道"
    assert translated.incoming.attachments == (Attachment(kind="photo", ref="large"),)


def test_a_picture_sent_as_a_file_is_a_photo_and_other_files_are_not() -> None:
    picture = {"file_id": "BQACAgIAAxk", "file_unique_id": "d", "file_name": "IMG_2041.PNG",
               "mime_type": "image/png", "file_size": 48_211}
    translated = translate_message(message(document=picture, caption="井盖丢了"))
    assert translated is not None and translated.incoming is not None
    assert translated.incoming.text == "井盖丢了"
    assert translated.incoming.attachments == (Attachment(kind="photo", ref="BQACAgIAAxk"),)
    pdf = {**picture, "file_name": "notice.pdf", "mime_type": "application/pdf"}
    voice = translate_message(message(voice={"file_id": "AwACAgIAAxk", "file_unique_id": "v",
                                             "duration": 6, "mime_type": "audio/ogg"}))
    assert voice is not None and voice.incoming is not None and voice.incoming.text == ""
    assert voice.incoming.attachments == (Attachment(kind="voice", ref="AwACAgIAAxk"),)
    other = translate_message(message(document=pdf))
    assert other is not None and other.unsupported and other.incoming is None


@pytest.mark.parametrize(("kind", "file_path", "content_type"), [
    ("photo", "photos/file_12.jpg", "image/jpeg"),
    ("photo", "photos/file_12.png", "image/png"),
    ("photo", "photos/file_12", "image/jpeg"),
    ("photo", "documents/file_3.pdf", "image/jpeg"),
    ("voice", "voice/file_7.oga", "audio/ogg"),
    ("voice", "voice/file_7.mp3", "audio/mpeg"),
    ("voice", "voice/file_7", "audio/ogg"),
])
def test_a_kept_file_has_its_kinds_default_type_unless_its_path_names_another(
        kind: str, file_path: str, content_type: str) -> None:
    assert content_type_of(kind, file_path) == content_type


def test_location_becomes_a_location_attachment() -> None:
    translated = translate_message(message(location={"latitude": 26.5694, "longitude": 106.7175}))
    assert translated is not None and translated.incoming is not None
    assert translated.incoming.attachments == (Attachment(kind="location", latitude=26.5694, longitude=106.7175),)


def test_what_we_cannot_read_and_what_is_not_for_us() -> None:
    sticker = translate_message(message(sticker={"file_id": "x", "file_unique_id": "y", "type": "regular",
                                                 "width": 1, "height": 1, "is_animated": False,
                                                 "is_video": False}))
    assert sticker is not None and sticker.unsupported
    group = Message.model_validate({"message_id": 1, "date": 1, "text": "hi", "from": USER,
                                    "chat": {"id": -5, "type": "group", "title": "楼栋群"}})
    assert translate_message(group) is None


def test_a_button_press_becomes_its_action() -> None:
    query = CallbackQuery.model_validate({
        "id": "q1", "from": USER, "chat_instance": "c", "data": "ack:42",
        "message": {"message_id": 9, "date": 1, "chat": PRIVATE, "text": "新工单"}})
    translated = translate_callback(query)
    assert translated is not None and translated.incoming is not None
    assert translated.incoming.action == "ack:42" and translated.chat_id == 1001


def test_buttons_and_force_reply_round_trip_through_the_outbox_rows() -> None:
    rows = outbox_buttons(Reply("请选择", buttons=((Button("签收", "ack:1"), Button("答复", "rep:1")),)))
    markup = reply_markup(rows)
    assert isinstance(markup, InlineKeyboardMarkup)
    assert [[b.callback_data for b in row] for row in markup.inline_keyboard] == [["ack:1", "rep:1"]]
    assert isinstance(reply_markup(outbox_buttons(Reply("请输入答复", expects_text=True))), ForceReply)
    assert reply_markup([]) is None


def test_callback_data_over_64_bytes_is_left_out() -> None:
    markup = reply_markup([[{"label": "太长", "action": "x:" + "确" * 22}, {"label": "好", "action": "ok:1"}]])
    assert isinstance(markup, InlineKeyboardMarkup)
    assert [b.callback_data for b in markup.inline_keyboard[0]] == ["ok:1"]


def test_long_text_is_split_within_telegrams_limit() -> None:
    text = "\n".join(f"第{i}行：" + "灯" * 50 for i in range(200))
    parts = split_text(text)
    assert len(parts) > 1 and all(utf16_len(p) <= MAX_TEXT for p in parts)
    assert "\n".join(parts) == text
    emoji = "😀" * 3000  # two UTF-16 units each
    assert all(utf16_len(p) <= MAX_TEXT for p in split_text(emoji))
    assert "".join(split_text(emoji)) == emoji
    assert split_text("短") == ["短"]


@pytest.mark.parametrize(("content_type", "method"), [
    ("image/jpeg", "photo"), ("image/png", "photo"),
    ("audio/ogg", "voice"), ("audio/mpeg", "voice"), ("audio/mp4", "voice"),
    ("audio/amr", "document"),  # WeChat's recordings: Telegram cannot play them as voice
    ("application/pdf", None),
])
def test_a_kept_file_goes_the_way_telegram_can_show_it(content_type: str, method: str | None) -> None:
    assert send_method(content_type) == method
