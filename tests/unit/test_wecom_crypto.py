"""WeCom callback crypto: griddesk's `CallbackCrypto` against the official WXBizMsgCrypt vectors,
and the loopback fake's own crypto (tests/fakes/wechat_crypto.py) against a third-party
implementation, wechatpy's WeCom `WeChatCrypto` (`wechatpy.enterprise` in 1.8; 2.0 calls it
`wechatpy.work`), in both directions."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto as WorkCrypto

from bot.channels import wechat as wc
from bot.channels import wecom as wm
from tests.fakes import wechat_crypto as crypto
from tests.fakes.wechat import render_xml

# The official WXBizMsgCrypt sample (PROTOCOLS.md §3.1).
TOKEN = "QDG6eK"
KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP = "wx5823bf96d3bd56c7"
ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Q"
    "czcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs"
    "8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG"
    "4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+"
    "rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0l"
    "XdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)


def test_the_url_check_answers_the_official_vector() -> None:
    ours = wm.CallbackCrypto(TOKEN, CORP, KEY)
    assert ours.verify_url("5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "1409659589", "263014780",
                           ECHOSTR) == "1616140317555161061"


def test_the_official_message_vector_decrypts_to_hello_from_mycreate() -> None:
    plain = wm.CallbackCrypto(TOKEN, CORP, KEY).decrypt(
        ENCRYPT, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    fields = wc.parse_xml(plain)
    assert (fields["Content"], fields["FromUserName"], fields["AgentID"], fields["MsgId"]) == (
        "hello", "mycreate", "218", "4561255354251345929")
    assert wm.translate(fields).incoming is not None


def test_a_bad_signature_or_another_corp_is_refused() -> None:
    with pytest.raises(wc.Rejected) as bad:
        wm.CallbackCrypto(TOKEN, CORP, KEY).verify_url("0" * 40, "1409659589", "263014780", ECHOSTR)
    assert bad.value.status == 403
    with pytest.raises(wc.Rejected) as other:
        wm.CallbackCrypto(TOKEN, "ww0000000000000000", KEY).decrypt(
            ENCRYPT, "477715d11cdb4164915debcba66cb864d751f3e6", "1409659813", "1372623149")
    assert other.value.status == 400


def test_wechatpy_work_crypto_reads_what_the_fake_encrypts_and_the_other_way_round() -> None:
    key, corp = crypto.new_encoding_aes_key(), "ww1234567890abcdef"
    message = "<xml><Content><![CDATA[请签收 ZN-20261123-0001]]></Content></xml>"
    # The fake → wechatpy: a push.
    encrypted = crypto.encrypt(message.encode(), key, corp)
    signature = crypto.signature("tok", "1700000000", "42", encrypted)
    envelope = render_xml({"ToUserName": corp, "AgentID": 1000002, "Encrypt": encrypted}).decode()
    assert WorkCrypto("tok", key, corp).decrypt_message(envelope, signature, "1700000000", "42") == message
    # The fake → wechatpy: the URL check's echostr.
    echostr = crypto.encrypt(b"8812334455", key, corp)
    echo_signature = crypto.signature("tok", "1700000000", "42", echostr)
    assert WorkCrypto("tok", key, corp).check_signature(echo_signature, "1700000000", "42", echostr) == "8812334455"
    # wechatpy → the fake: an encrypted reply.
    reply = WorkCrypto("tok", key, corp).encrypt_message(message, "43", "1700000001")
    root = ET.fromstring(reply)
    inner = root.findtext("Encrypt") or ""
    assert root.findtext("MsgSignature") == crypto.signature("tok", "1700000001", "43", inner)
    assert crypto.decrypt(inner, key) == (message.encode(), corp)


def test_a_card_press_translates_to_the_buttons_action() -> None:
    fields = {"ToUserName": CORP, "FromUserName": "ZhangLi", "CreateTime": "1700000000", "MsgType": "event",
              "Event": "template_card_event", "EventKey": "ack:12", "TaskId": "gd_1", "ResponseCode": "rc"}
    translation = wm.translate(fields)
    assert translation.incoming is not None and translation.incoming.action == "ack:12"
    assert translation.incoming.address == "zhangli"  # WeCom ids compare lowercased
    assert translation.press == wm.CardPress("ack:12", "gd_1", "rc")
    # Two presses in the same second on different cards are two events, not one.
    other = dict(fields, EventKey="res:12", TaskId="gd_2")
    assert wm.dedupe_key(fields) != wm.dedupe_key(other)


def test_a_notice_becomes_a_card_with_its_lines_and_buttons() -> None:
    text = "新工单派给您：\n工单 ZN-20261123-0001（报事 · 公共设施）\n楼道灯坏了\n地点：3号楼\n时限：签收 11:00"
    card = wm.card(text, [("签收", "ack:1"), ("答复", "rep:1")], "gd_x")
    assert card["main_title"]["title"] == "新工单派给您："
    assert {"keyname": "地点", "value": "3号楼"} in card["horizontal_content_list"]
    assert "楼道灯坏了" in card["sub_title_text"]
    assert [b["key"] for b in card["button_list"]] == ["ack:1", "rep:1"]
    assert not wm.fits_card([("x", f"case:{i}") for i in range(7)])
