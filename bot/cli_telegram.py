"""`griddesk staff invite` and `griddesk qr`: binding staff on Telegram, and printable grid signs.

    griddesk staff invite zhang_li      prints https://t.me/<bot>?start=s_<token> (one use; expires
                                        after TELEGRAM_INVITE_TTL_HOURS)
    griddesk qr [--out DIR] [--building CODE ...] [--wechat]
                                        DIR/<building code>.png per building: the grid sign
                                        (网格指示牌) with building, grid, grid worker and phone, and
                                        the QR code of https://t.me/<bot>?start=b_<building code>
                                        (with --wechat: the building's WeChat scene QR code,
                                        DIR/<building code>-wechat.png)

The bot's name comes from TELEGRAM_BOT_USERNAME. Chinese text on the sign needs a CJK font:
GRID_SIGN_FONT (a .ttf/.otf/.ttc path), else Noto Sans CJK from the noto-cjk-sans-otc package,
else a known system font (Noto Sans CJK, WenQuanYi);
without one the sign is drawn with Pillow's default font and shows codes and ASCII only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.settings import Settings

CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
SIGN_SIZE = (1240, 1754)  # A5 at 210 dpi: readable in a stairwell, fits an A4 half sheet


def deep_link(username: str, payload: str) -> str:
    return f"https://t.me/{username.lstrip('@')}?start={payload}"


# --------------------------------------------------------------------------- staff invite


def _staff_invite(args: argparse.Namespace) -> int:
    from bot.app import open_database
    from handlers.errors import NotFound
    from handlers.registry import staff_invites
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    settings = Settings()
    engine = open_database(settings)
    try:
        with UnitOfWork(engine) as uow:
            token = staff_invites.issue(uow.session, args.person, SystemClock().now(),
                                        dt.timedelta(hours=settings.telegram_invite_ttl_hours))
            uow.commit()
    except NotFound:
        print(f"no active staff member {args.person!r}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(deep_link(settings.telegram_bot_username, f"{staff_invites.PREFIX}{token}"))
    return 0


def _staff_password_link(args: argparse.Namespace) -> int:
    """A one-time link to set the person's console password (handlers/registry/console_access.py)."""
    from bot.app import open_database
    from handlers.errors import NotFound
    from handlers.registry import console_access
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    settings = Settings()
    engine = open_database(settings)
    try:
        with UnitOfWork(engine) as uow:
            token = console_access.issue_password_link(uow.session, args.person, SystemClock().now())
            uow.commit()
    except NotFound:
        print(f"no active staff member {args.person!r}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"{settings.public_url.rstrip('/')}/console/password/{token}")
    return 0


# --------------------------------------------------------------------------- grid signs


@dataclass(frozen=True)
class SignText:
    """What one grid sign says; `ascii_only` when no CJK font is available."""

    building_code: str
    lines: tuple[str, ...]
    title: str
    caption: str


def find_font(configured: Path | None) -> Path | None:
    """GRID_SIGN_FONT when set; else Noto Sans CJK from the noto-cjk-sans-otc package; else a
    system CJK font."""
    if configured is not None:
        return configured if configured.exists() else None
    try:
        import noto_cjk_sans_otc

        bundled = Path(str(noto_cjk_sans_otc.FONT_PATH))
        if bundled.exists():
            return bundled
    except ImportError:
        pass
    for candidate in CJK_FONTS:
        if Path(candidate).exists():
            return Path(candidate)
    return None


def sign_text(session: Any, building: Any, *, ascii_only: bool, lang: str = "zh-Hans") -> SignText:
    """The sign's lines for one building (NotFound when its grid has no grid worker post)."""
    from sqlalchemy import select
    from sqlmodel import col

    from handlers.registry import directory
    from handlers.replies import say
    from storage import tables as t

    sign = directory.grid_sign(session, building)
    if not ascii_only:
        return SignText(
            building_code=sign.building_code,
            title=say(lang, "telegram.sign_title"),
            lines=(say(lang, "telegram.sign_building", building=sign.building),
                   say(lang, "telegram.sign_grid", grid=sign.grid, committee=sign.committee),
                   say(lang, "telegram.sign_worker", worker=sign.worker),
                   say(lang, "telegram.sign_phone", phone=sign.worker_phone or "—")),
            caption=say(lang, "telegram.sign_scan"),
        )
    post = session.scalars(select(t.Post).where(col(t.Post.grid_id) == building.grid_id,
                                                col(t.Post.kind) == "grid",
                                                col(t.Post.active).is_(True))).first()
    worker = session.get(t.Person, post.a_holder_id) if post is not None else None
    return SignText(
        building_code=sign.building_code,
        title=say("en", "telegram.sign_title"),
        lines=(say("en", "telegram.sign_building", building=sign.building_code),
               f"Grid: {sign.grid_code}",
               say("en", "telegram.sign_worker", worker=worker.code if worker else "-"),
               say("en", "telegram.sign_phone", phone=_ascii(sign.worker_phone) or "-")),
        caption=say("en", "telegram.sign_scan"),
    )


def _ascii(text: str | None) -> str:
    return (text or "").encode("ascii", "ignore").decode()


def render_sign(text: SignText, qr_content: str, font_path: Path | None) -> Any:
    """The sign as a Pillow image: title, lines, the QR code, the caption and the link."""
    import segno
    from PIL import Image, ImageDraw, ImageFont

    def font(size: int) -> Any:
        if font_path is not None:
            return ImageFont.truetype(str(font_path), size)
        return ImageFont.load_default(size=size)

    width, height = SIGN_SIZE
    image = Image.new("RGB", SIGN_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, width - 20, height - 20), outline=(178, 34, 34), width=12)
    draw.rectangle((20, 20, width - 20, 190), fill=(178, 34, 34))
    draw.text((width // 2, 105), text.title, font=font(88), fill="white", anchor="mm")
    y = 250
    for line in text.lines:
        draw.text((90, y), line, font=font(54), fill="black")
        y += 86
    buffer = io.BytesIO()
    segno.make(qr_content, error="m").save(buffer, kind="png", scale=16, border=2)
    code = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    side = min(760, width - 180)
    code = code.resize((side, side), Image.Resampling.NEAREST)
    top = y + 30
    image.paste(code, ((width - side) // 2, top))
    draw.text((width // 2, top + side + 60), text.caption, font=font(48), fill="black", anchor="mm")
    draw.text((width // 2, top + side + 130), qr_content, font=font(30), fill=(90, 90, 90), anchor="mm")
    draw.text((width - 60, height - 60), text.building_code, font=font(30), fill=(90, 90, 90), anchor="rd")
    return image


def write_signs(settings: Settings, out: Path, qr_content: Callable[[str], str], *,
                suffix: str = "", only: list[str] | None = None) -> list[Path]:
    """One PNG per active building whose grid has a grid worker; returns the files written."""
    from sqlalchemy import select
    from sqlmodel import col

    from bot.app import open_database
    from handlers.errors import NotFound
    from storage import tables as t
    from storage.unit_of_work import UnitOfWork

    font_path = find_font(settings.grid_sign_font)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    engine = open_database(settings)
    try:
        with UnitOfWork(engine) as uow:
            buildings = uow.session.scalars(
                select(t.Building).where(col(t.Building.active).is_(True))
                .order_by(col(t.Building.code))).all()
            for building in buildings:
                if only and building.code not in only:
                    continue
                try:
                    text = sign_text(uow.session, building, ascii_only=font_path is None)
                except NotFound:
                    print(f"{building.code}: its grid has no grid worker post; no sign", file=sys.stderr)
                    continue
                image = render_sign(text, qr_content(building.code), font_path)
                path = out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', building.code)}{suffix}.png"
                image.save(path, format="PNG", dpi=(210, 210))
                written.append(path)
    finally:
        engine.dispose()
    return written


def _qr(args: argparse.Namespace) -> int:
    settings = Settings()
    out = Path(args.out)
    if args.wechat:
        try:
            from bot.channels.wechat import scene_qr_url
        except ImportError as exc:
            print(f"WeChat scene QR codes are not available in this installation ({exc})", file=sys.stderr)
            return 2

        def content(code: str) -> str:
            return str(scene_qr_url(settings, code))
        suffix = "-wechat"
    else:
        def content(code: str) -> str:
            return deep_link(settings.telegram_bot_username, f"b_{code}")
        suffix = ""
    try:
        if settings.grid_sign_font is not None and not settings.grid_sign_font.exists():
            print(f"GRID_SIGN_FONT {settings.grid_sign_font} does not exist", file=sys.stderr)
        written = write_signs(settings, out, content, suffix=suffix, only=args.building)
    except RuntimeError as exc:  # WeChat not configured
        print(str(exc), file=sys.stderr)
        return 2
    except Exception as exc:
        if args.wechat and type(exc).__module__.startswith("wechatpy"):
            print(f"WeChat refused the QR code: {exc}", file=sys.stderr)
            return 1
        raise
    font = find_font(settings.grid_sign_font)
    note = "" if font else " (no CJK font found: set GRID_SIGN_FONT; the signs show codes and ASCII only)"
    print(f"{len(written)} grid sign(s) written to {out}{note}")
    return 0 if written else 1


def register(subparsers: Any) -> None:
    staff = subparsers.add_parser("staff", help="staff accounts on chat channels")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    invite = staff_sub.add_parser("invite", help="print a one-time Telegram link that binds a staff member")
    invite.add_argument("person", help="the person's code in the registry, e.g. zhang_li")
    invite.set_defaults(func=_staff_invite)
    password = staff_sub.add_parser("password-link",
                                    help="print a one-time link to set a staff member's console password")
    password.add_argument("person", help="the person's code in the registry, e.g. zhang_li")
    password.set_defaults(func=_staff_password_link)

    qr = subparsers.add_parser("qr", help="write a printable grid sign (PNG) per building")
    qr.add_argument("--out", default="var/grid-signs", help="output folder (default var/grid-signs)")
    qr.add_argument("--building", action="append", metavar="CODE",
                    help="only this building (repeatable); default: every active building")
    qr.add_argument("--wechat", action="store_true",
                    help="encode the building's WeChat scene QR code instead of the Telegram link")
    qr.set_defaults(func=_qr)
