"""`griddesk wechat menu|qr`: the Official Account's custom menu and the buildings' scene QR codes.

    griddesk wechat menu                 create the custom menu (办事/投诉/建议, 我的工单, 我的网格员)
    griddesk wechat qr [--out DIR] [--building CODE ...]
                                         a permanent scene QR code per building (scene_str
                                         "b_<building code>"): DIR/<code>.png and DIR/wechat-qr.csv

Both need WECHAT_APPID and WECHAT_SECRET (and WECHAT_API_BASE for a non-default server); the
server's IP must be in the account's IP whitelist (errcode 40164 otherwise).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any


def _client(settings: Any) -> Any:
    from bot.channels import wechat

    client = wechat.build_client(settings)
    if client is None:
        print("WeChat is not configured: set WECHAT_APPID and WECHAT_SECRET", file=sys.stderr)
    return client


def _menu(args: argparse.Namespace) -> int:
    from wechatpy.exceptions import WeChatClientException

    from bot.channels import wechat
    from bot.settings import Settings

    client = _client(Settings())
    if client is None:
        return 2
    try:
        wechat.create_menu(client)
    except WeChatClientException as exc:
        print(f"WeChat refused the menu: {exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    names = [b["name"] + (" (" + " / ".join(s["name"] for s in b["sub_button"]) + ")" if "sub_button" in b else "")
             for b in wechat.MENU["button"]]
    print("menu created: " + ", ".join(names))
    return 0


def _buildings(settings: Any, only: list[str] | None) -> list[tuple[str, str]]:
    from sqlalchemy import select
    from sqlmodel import col

    from bot.app import open_database
    from storage import tables as t
    from storage.unit_of_work import UnitOfWork

    engine = open_database(settings)
    try:
        with UnitOfWork(engine) as uow:
            stmt = (select(t.Building).where(col(t.Building.active).is_(True))
                    .order_by(col(t.Building.code)))
            rows = [(b.code, b.name) for b in uow.session.scalars(stmt)]
    finally:
        engine.dispose()
    if only:
        wanted = set(only)
        rows = [r for r in rows if r[0] in wanted]
    return rows


def write_qr_codes(client: Any, buildings: list[tuple[str, str]], out: Path) -> Path:
    """Create each building's scene QR code, save WeChat's PNG as out/<code>.png, and write
    out/wechat-qr.csv (code, name, scene, url, ticket, image). Returns the CSV path."""
    from bot.channels import wechat

    out.mkdir(parents=True, exist_ok=True)
    table = out / "wechat-qr.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["building", "name", "scene", "url", "ticket", "image"])
        for code, name in buildings:
            qr = wechat.create_scene_qr(client, code)
            png = client._http.get(qr["image"], timeout=client.timeout)
            png.raise_for_status()
            (out / f"{_safe(code)}.png").write_bytes(png.content)
            writer.writerow([code, name, wechat.scene_of(code), qr["url"], qr["ticket"], qr["image"]])
    return table


def _safe(code: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in code)


def _qr(args: argparse.Namespace) -> int:
    from wechatpy.exceptions import WeChatClientException

    from bot.settings import Settings

    settings = Settings()
    client = _client(settings)
    if client is None:
        return 2
    buildings = _buildings(settings, args.building)
    if not buildings:
        print("no buildings: load a registry first (griddesk registry load FILE)", file=sys.stderr)
        return 2
    try:
        table = write_qr_codes(client, buildings, Path(args.out))
    except WeChatClientException as exc:
        print(f"WeChat refused a QR code: {exc.errcode} {exc.errmsg}", file=sys.stderr)
        return 1
    print(f"{len(buildings)} QR codes in {args.out}; URLs in {table}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("wechat", help="the WeChat Official Account")
    sub = parser.add_subparsers(dest="wechat_command", required=True)
    menu = sub.add_parser("menu", help="create the custom menu")
    menu.set_defaults(func=_menu)
    qr = sub.add_parser("qr", help="create the buildings' permanent scene QR codes")
    qr.add_argument("--out", default="var/wechat-qr", help="directory for the PNG files and the CSV")
    qr.add_argument("--building", action="append", help="only this building code (repeatable)")
    qr.set_defaults(func=_qr)
