"""`griddesk staff invite` and `griddesk qr` as an operator uses them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from bot.cli import main
from handlers.registry import staff_invites
from storage import db
from storage import tables as t
from storage.clock import SystemClock
from storage.unit_of_work import UnitOfWork
from tests.conftest import EXAMPLE


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SECRET_KEY", "ops-secret")
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "zhongnan_bot")
    assert main(["registry", "load", str(EXAMPLE)]) == 0
    capsys.readouterr()
    return url


def test_staff_invite_prints_a_one_time_deep_link(registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["staff", "invite", "zhang_li"]) == 0
    link = capsys.readouterr().out.strip()
    match = re.fullmatch(r"https://t\.me/zhongnan_bot\?start=s_([A-Za-z0-9_-]+)", link)
    assert match, link
    assert len(f"s_{match.group(1)}") <= 64

    engine = db.make_engine(registry)
    try:
        with UnitOfWork(engine) as uow:
            now = SystemClock().now()
            first = staff_invites.redeem(uow.session, match.group(1), channel="telegram", address="2002",
                                         now=now, lang="zh-Hans")
            again = staff_invites.redeem(uow.session, match.group(1), channel="telegram", address="3003",
                                         now=now, lang="zh-Hans")
            uow.commit()
            bound = uow.session.scalars(select(t.Identity).where(t.Identity.address == "2002")).one()
            person = uow.session.get(t.Person, bound.person_id)
    finally:
        engine.dispose()
    assert "张丽" in first[0].text and "已经用过" in again[0].text
    assert person is not None and person.code == "zhang_li"

    assert main(["staff", "invite", "nobody"]) == 2


def test_qr_writes_a_printable_grid_sign_per_building(registry: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "signs"
    assert main(["qr", "--out", str(out), "--building", "ZN-B03", "--building", "ZN-B01"]) == 0
    printed = capsys.readouterr().out
    assert "2 grid sign(s)" in printed
    assert "ASCII only" not in printed  # the bundled Noto Sans CJK draws the Chinese names
    assert sorted(p.name for p in out.iterdir()) == ["ZN-B01.png", "ZN-B03.png"]
    with Image.open(out / "ZN-B03.png") as sign:
        assert sign.format == "PNG" and sign.size[1] > sign.size[0] >= 1000
        # The QR code's dark modules are drawn in the middle of the sign.
        middle = sign.convert("L").crop((sign.size[0] // 3, sign.size[1] // 2 - 50,
                                         2 * sign.size[0] // 3, sign.size[1] // 2 + 50))
        assert middle.getextrema() == (0, 255)


def test_qr_without_a_cjk_font_falls_back_to_codes(registry: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRID_SIGN_FONT", str(tmp_path / "missing.ttf"))
    assert main(["qr", "--out", str(tmp_path / "ascii"), "--building", "ZN-B01"]) == 0
    captured = capsys.readouterr()
    assert "codes and ASCII only" in captured.out and "does not exist" in captured.err
    with Image.open(tmp_path / "ascii" / "ZN-B01.png") as sign:
        assert sign.format == "PNG"


def test_qr_for_wechat_needs_the_wechat_account(registry: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["qr", "--wechat", "--out", str(tmp_path / "wx"), "--building", "ZN-B01"]) == 2
    assert "WECHAT_APPID" in capsys.readouterr().err
