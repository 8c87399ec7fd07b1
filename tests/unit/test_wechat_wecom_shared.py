"""What the Official Account and WeCom share (bot/channels/wechat.py): numbered options, each
channel under the key its stored state has always used, and texts and locations read alike."""

from __future__ import annotations

import pytest

from bot.channels import wechat as wc
from bot.channels import wecom as wm
from bot.channels.base import Attachment, Incoming
from storage.state import MemoryStateStore


def test_options_stored_before_an_upgrade_still_answer_a_digit() -> None:
    state = MemoryStateStore()
    state.put("wechat:options:o1", {"actions": ["rate:1:s"]}, ttl=60)
    state.put("wecom:options:zhangsan", {"actions": ["trf:1:P1", "trf:1:P2"]}, ttl=60)
    assert wc.number_action(state, "o1", "1") == "rate:1:s"
    assert wm.number_action(state, "zhangsan", "②") == "trf:1:P2"
    assert wm.number_action(state, "o1", "1") is None  # one channel's options are not the other's
    wm.remember_options(state, "lisi", ["res:1"])
    wc.remember_options(state, "o2", ["rate:2:s"])
    assert state.get("wecom:options:lisi") == {"actions": ["res:1"]}
    assert state.get("wechat:options:o2") == {"actions": ["rate:2:s"]}


@pytest.mark.parametrize("word", ["²", "⑴", "❶", "٣"])
def test_a_digit_that_is_no_decimal_numeral_is_no_option_and_no_error(word: str) -> None:
    """"²" passes str.isdigit() but not int(): a push of it once answered WeChat with a 500."""
    state = MemoryStateStore()
    wc.remember_options(state, "o1", ["a", "b", "c"])
    wm.remember_options(state, "u1", ["a", "b", "c"])
    assert wc.number_action(state, "o1", word) == wm.number_action(state, "u1", word) == (
        "c" if word == "٣" else None)  # Arabic-Indic three is a decimal digit: option 3


def test_a_text_without_options_forgets_them_on_the_official_account_only() -> None:
    state = MemoryStateStore()
    wc.remember_options(state, "o1", ["rate:1:s"])
    wm.remember_options(state, "zhangsan", ["ack:1"])
    wc.remember_options(state, "o1", [])
    wm.remember_options(state, "zhangsan", [])
    assert wc.number_action(state, "o1", "1") is None
    assert wm.number_action(state, "zhangsan", "1") == "ack:1"


@pytest.mark.parametrize(("module", "sender", "address"), [(wc, "o1", "o1"), (wm, "ZhangSan", "zhangsan")])
def test_texts_and_locations_read_alike_on_both_channels(module: object, sender: str, address: str) -> None:
    translate = module.translate  # type: ignore[attr-defined]
    channel = module.CHANNEL  # type: ignore[attr-defined]
    digit = {"FromUserName": sender, "MsgType": "text", "Content": "2"}
    assert translate(digit, number_action=lambda text: "ack:1" if text == "2" else None).incoming == \
        Incoming(channel=channel, address=address, action="ack:1")
    assert translate(digit).incoming == Incoming(channel=channel, address=address, text="2")
    place = {"FromUserName": sender, "MsgType": "location", "Location_X": "26.5694", "Location_Y": "106.7",
             "Label": "中山路"}
    assert translate(place).incoming == Incoming(channel=channel, address=address, attachments=(
        Attachment(kind="location", latitude=26.5694, longitude=106.7, ref="中山路"),))
    nowhere = place | {"Location_X": "nan"}
    assert translate(nowhere).text_key == "wechat.unsupported" and translate(nowhere).incoming is None
