"""The WeChat API client against the loopback WeChat: the token, the bounded retry, the shared
token in Redis, the sender's fallbacks, and the `griddesk wechat` commands."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from wechatpy.exceptions import WeChatClientException

from bot.app import Services
from bot.channels import wechat as wc
from bot.channels.base import Outgoing
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from tests.fakes.serving import serve
from tests.fakes.wechat import FakeWeChat

TEMPLATE = "TPL_NOTICE"


@pytest.fixture
def fake(clock: FixedClock) -> Iterator[tuple[FakeWeChat, str]]:
    fake = FakeWeChat(clock=clock, templates={TEMPLATE: ""})
    with serve(fake.api_app) as api:
        yield fake, api


def client_for(fake: FakeWeChat, api: str, clock: FixedClock,
               tokens: wc.TokenStore | None = None) -> wc.WeChatClient:
    return wc.WeChatClient(fake.appid, fake.secret, api_base=api,
                           tokens=tokens or wc.MemoryTokenStore(now=lambda: clock.now().timestamp()))


def fetches(fake: FakeWeChat) -> int:
    return len([c for c in fake.api_calls if c.path == "token"])


def test_a_rejected_token_is_refreshed_once_and_the_call_retried_once(
        fake: tuple[FakeWeChat, str], clock: FixedClock) -> None:
    wechat, api = fake
    client = client_for(wechat, api, clock)
    client.menu.create(wc.MENU)
    assert fetches(wechat) == 1
    wechat.inject(40001, path="menu/create")
    client.menu.create(wc.MENU)
    assert fetches(wechat) == 2
    # Twice in a row: one refresh, one retry, then the error; no recursion, no stampede.
    wechat.inject(40001, path="menu/create")
    wechat.inject(40001, path="menu/create")
    with pytest.raises(WeChatClientException) as excinfo:
        client.menu.create(wc.MENU)
    assert excinfo.value.errcode == 40001
    assert fetches(wechat) == 3


def test_the_token_is_refreshed_before_it_expires(fake: tuple[FakeWeChat, str], clock: FixedClock) -> None:
    wechat, api = fake
    client = client_for(wechat, api, clock)
    client.menu.create(wc.MENU)
    clock.advance(dt.timedelta(seconds=7200 - 120))  # inside the refresh margin
    client.menu.create(wc.MENU)
    assert fetches(wechat) == 2
    assert all(c.answer and c.answer.get("errcode") == 0 for c in wechat.api_calls if c.path == "menu/create")


def test_processes_share_one_token_through_redis(fake: tuple[FakeWeChat, str], clock: FixedClock,
                                                 redis_url: str, redis_prefix: str) -> None:
    wechat, api = fake
    now = lambda: clock.now().timestamp()
    stores = [wc.RedisTokenStore(redis_url, wechat.appid, now=now, prefix=redis_prefix) for _ in range(3)]
    clients = [client_for(wechat, api, clock, store) for store in stores]
    for client in clients:
        client.menu.create(wc.MENU)
    assert fetches(wechat) == 1
    # One process meets 40001: the others pick up its new token instead of fetching their own.
    wechat.inject(40001, path="menu/create")
    clients[0].menu.create(wc.MENU)
    for client in clients[1:]:
        client.menu.create(wc.MENU)
    assert fetches(wechat) == 2
    for store in stores:
        store.close()


async def test_the_sender_falls_back_to_a_template_then_holds(
        fake: tuple[FakeWeChat, str], clock: FixedClock) -> None:
    wechat, api = fake
    client = client_for(wechat, api, clock)
    resident = wechat.add_user()
    state = MemoryStateStore()
    sender = wc.WeChatSender(client, state=state, template_id=TEMPLATE, hold_seconds=3600)
    notice = Outgoing(1, "wechat", resident, "工单 ZN-20261123-0001 已办结（张丽）：灯已换好\n请为这次办理打分：",
                      [[{"label": "满意", "action": "rate:1:s"}]])
    result = await sender.send(notice)  # no window: 45015
    assert result.ok
    seen = wechat.seen(resident)[-1]
    assert seen.kind == "template" and "ZN-20261123-0001" in seen.text
    without = wc.WeChatSender(client, state=state, template_id=None, hold_seconds=3600)
    held = await without.send(notice)
    assert not held.ok and held.retry_after == 3600 and not held.error and not held.unreachable
    gone = wechat.add_user(following=False)
    held = await sender.send(Outgoing(2, "wechat", gone, "工单有答复"))
    assert not held.ok and held.retry_after == 3600  # 43004: waits for them to come back
    wechat.inject(-1, path="message/custom/send")
    busy = await sender.send(notice)
    assert not busy.ok and busy.error.startswith("wechat -1")


def test_cli_creates_the_menu_and_the_buildings_qr_codes(
        services: Services, fake: tuple[FakeWeChat, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from bot import cli

    wechat, api = fake
    for name, value in {"DATABASE_URL": services.settings.database_url, "WECHAT_APPID": wechat.appid,
                        "WECHAT_SECRET": wechat.secret, "WECHAT_API_BASE": api,
                        "SECRET_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["wechat", "menu"]) == 0
    assert wechat.menu == wc.MENU
    out = tmp_path / "qr"
    assert cli.main(["wechat", "qr", "--out", str(out), "--building", "ZN-B03",
                     "--building", "ZN-B04"]) == 0
    rows = list(csv.DictReader((out / "wechat-qr.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["scene"] for r in rows] == ["b_ZN-B03", "b_ZN-B04"]
    assert (out / "ZN-B03.png").read_bytes().startswith(b"\x89PNG")
    scenes = {qr.scene: qr for qr in wechat.qrcodes.values()}
    assert scenes["b_ZN-B03"].permanent and rows[0]["url"] == scenes["b_ZN-B03"].url
    # What `griddesk qr --wechat` prints on the grid signs.
    from bot.settings import Settings

    assert wc.scene_qr_url(Settings(), "ZN-B05").startswith("http://weixin.qq.com/q/")
    monkeypatch.delenv("WECHAT_SECRET")
    assert cli.main(["wechat", "menu"]) == 2
