"""The WeChat adapter's pure parts: signatures, defensive parsing, translation, rendering."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bot.channels import wechat as wc
from bot.channels.base import Button, Reply
from storage.state import MemoryStateStore
from tests.fakes import wechat_crypto as crypto


def test_signatures_match_the_official_vectors_and_reject_forgeries() -> None:
    assert wc.verify_signature("AAAAA", "f464b24fc39322e44b38aa78f5edd27bd1441696", "1714036504", "1514711492")
    assert wc.verify_signature("AAAAA", "899cf89e464efb63f54ddac96b0a0a235f53aa78", "1714037059", "486452656")
    assert not wc.verify_signature("AAAAA", "0" * 40, "1714037059", "486452656")
    assert not wc.verify_signature("AAAAA", "", "1714037059", "486452656")


@pytest.mark.parametrize("body", [
    b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><a>&e;</a></xml>',
    b'<!doctype xml [<!entity a "x">]><xml>&a;</xml>',
    b"<notxml/>",
    b"<xml><a>",
    b"\xff\xfe<\x00x\x00",
    b'<?xml version="1.0" encoding="UTF-16"?><xml/>',
])
def test_parse_xml_refuses_dtds_garbage_and_other_roots(body: bytes) -> None:
    with pytest.raises(wc.Rejected) as excinfo:
        wc.parse_xml(body)
    assert excinfo.value.status == 400


def test_a_reply_with_cdata_end_in_the_text_stays_valid_xml() -> None:
    text = "灯坏了]]><Content>x</Content>]]>"
    root = ET.fromstring(wc.reply_xml("o1", "gh_1", text, 1700000000))
    assert root.findtext("Content") == text and root.findtext("ToUserName") == "o1"


def test_callback_crypto_tries_the_previous_key() -> None:
    old, new = crypto.new_encoding_aes_key(), crypto.new_encoding_aes_key()
    encrypted = crypto.encrypt(b"<xml><A>1</A></xml>", old, "wx1")
    sig = crypto.signature("tok", "1", "2", encrypted)
    plain, index = wc.CallbackCrypto("tok", "wx1", new, old).decrypt(encrypted, sig, "1", "2")
    assert (plain, index) == ("<xml><A>1</A></xml>", 1)
    with pytest.raises(wc.Rejected) as excinfo:
        wc.CallbackCrypto("tok", "wx1", new).decrypt(encrypted, sig, "1", "2")
    assert excinfo.value.status == 400
    with pytest.raises(wc.Rejected) as excinfo:
        wc.CallbackCrypto("tok", "wx1", old).decrypt(encrypted, "f" * 40, "1", "2")
    assert excinfo.value.status == 403


def event(name: str, key: str = "") -> dict[str, str]:
    return {"FromUserName": "o1", "MsgType": "event", "Event": name, "EventKey": key, "CreateTime": "7"}


def test_translation_of_events_and_messages() -> None:
    scan_follow = wc.translate(event("subscribe", "qrscene_b_ZN-B03"))
    assert scan_follow.incoming and scan_follow.incoming.action == "bind:ZN-B03"
    assert scan_follow.lead_key == "wechat.welcome"
    assert wc.translate(event("subscribe")).incoming.text == "/grid"  # type: ignore[union-attr]
    assert wc.translate(event("SCAN", "b_ZN-B07")).incoming.action == "bind:ZN-B07"  # type: ignore[union-attr]
    assert wc.translate(event("CLICK", wc.KEY_MY_CASES)).incoming.text == "/status"  # type: ignore[union-attr]
    assert wc.translate(event("CLICK", wc.KEY_SERVICE)).text_key == "wechat.menu_service"
    assert wc.translate(event("LOCATION")) == wc.Translation()
    assert wc.translate(event("unsubscribe")) == wc.Translation()
    location = wc.translate({"FromUserName": "o1", "MsgType": "location", "Location_X": "26.5694",
                             "Location_Y": "106.7175"}).incoming
    assert location and location.attachments[0].latitude == 26.5694
    assert location.attachments[0].longitude == 106.7175
    assert wc.translate({"FromUserName": "o1", "MsgType": "voice"}).text_key == "wechat.voice_not_understood"
    assert wc.translate({"FromUserName": "o1", "MsgType": "shortvideo"}).text_key == "wechat.unsupported"
    assert wc.dedupe_key({"MsgType": "text", "MsgId": "42", "FromUserName": "o1"}) == "m42"
    assert wc.dedupe_key(event("CLICK")) == "eo1:7"


def test_photos_and_voice_messages_name_the_media_to_keep() -> None:
    photo = wc.translate({"FromUserName": "o1", "MsgType": "image", "MediaId": "M1", "PicUrl": "http://p/1"})
    assert photo.media_id == "M1" and photo.incoming is not None
    assert [(a.kind, a.ref) for a in photo.incoming.attachments] == [("photo", "M1")]
    # Without a MediaId the PicUrl is the only reference there is, and nothing can be downloaded.
    url_only = wc.translate({"FromUserName": "o1", "MsgType": "image", "PicUrl": "http://p/1"})
    assert url_only.media_id is None and url_only.incoming is not None
    assert url_only.incoming.attachments[0].ref == "http://p/1"
    heard = wc.translate({"FromUserName": "o1", "MsgType": "voice", "MediaId": "V1", "Recognition": "灯坏了"})
    assert heard.media_id == "V1" and heard.incoming is not None and heard.incoming.text == "灯坏了"
    assert [(a.kind, a.ref) for a in heard.incoming.attachments] == [("voice", "V1")]
    # Without WeChat's text the recording is kept all the same; the desk asks for a sentence.
    silent = wc.translate({"FromUserName": "o1", "MsgType": "voice", "MediaId": "V2"})
    assert silent.media_id == "V2" and silent.incoming is not None and silent.incoming.text == ""
    assert [(a.kind, a.ref) for a in silent.incoming.attachments] == [("voice", "V2")]


def test_buttons_become_numbered_options_a_digit_answers() -> None:
    state = MemoryStateStore()
    reply = Reply("工单已办结", buttons=((Button("满意", "rate:1:s"), Button("基本满意", "rate:1:b")),
                                        (Button("不满意", "rate:1:u"),)))
    text = wc.render_replies(state, "zh-Hans", "o1", [reply], lead="")
    assert "① 满意" in text and "③ 不满意" in text and "回复序号" in text
    assert wc.number_action(state, "o1", "3") == "rate:1:u"
    assert wc.number_action(state, "o1", "②") == "rate:1:b"
    assert wc.number_action(state, "o1", "4") is None
    assert wc.number_action(state, "o1", "3 楼的灯") is None
    wc.render_replies(state, "zh-Hans", "o1", [Reply("好的")])
    assert wc.number_action(state, "o1", "1") is None


def test_template_data_carries_the_case_number() -> None:
    sender = wc.WeChatSender(client=None, state=MemoryStateStore())  # type: ignore[arg-type]
    data = sender.template_data("zh-Hans", "工单 ZN-20261123-0001 已由 张丽 签收。\n首问负责人：张丽")
    assert data["first"]["value"].startswith("工单 ZN-20261123-0001")
    assert data["keyword1"]["value"] == "ZN-20261123-0001"
    assert data["keyword2"]["value"] == "首问负责人：张丽"
    assert "我的工单" in data["remark"]["value"]
