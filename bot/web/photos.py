"""Links that show a case's kept photos and voice messages to staff on a channel that cannot
carry them (WeChat).

WeChat lets the account send a staff member 5 customer-service messages in the 48 hours after
they last wrote; a photo each would use them up before the case card itself. So their card ends
with one link, `/photos/{token}`: a page with the photos (and players for the recordings), the
token signed with SECRET_KEY for those media ids only and valid for LINK_TTL (30 days).
Whoever holds the link sees those files and nothing else; a forged, altered or expired token
gets 404.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import HTMLResponse

from bot.settings import Settings
from bot.web.auth import sign, verify
from bot.web.deps import Services, answers
from bot.web.media import kept_response
from storage import media
from storage.unit_of_work import UnitOfWork

router = APIRouter()
PREFIX = "photos:"


def photo_link(settings: Settings, media_ids: Sequence[int]) -> str:
    """The absolute URL of the page showing `media_ids`."""
    token = sign(settings.secret_key, PREFIX + ".".join(str(i) for i in media_ids))
    return f"{settings.public_url.rstrip('/')}/photos/{quote(token, safe='')}"


def _media_ids(services: Services, token: str) -> list[int]:
    signed = verify(services.settings.secret_key, token)
    if signed is None or not signed.startswith(PREFIX):
        raise HTTPException(status_code=404, detail="not found")
    try:
        return [int(i) for i in signed[len(PREFIX):].split(".")]
    except ValueError:
        raise HTTPException(status_code=404, detail="not found") from None


@router.get("/photos/{token}", response_class=HTMLResponse, responses=answers(404))
def photos_page(token: str, services: Services) -> HTMLResponse:
    ids = _media_ids(services, token)
    base = html.escape(f"/photos/{quote(token, safe='')}")
    with UnitOfWork(services.engine) as uow:
        types = media.content_types(uow.session, ids)
    shown = []
    for n, i in enumerate(ids, 1):
        kind = types.get(i, "")
        if kind.startswith("image/"):
            shown.append(f'<img src="{base}/{i}" alt="{n}">')
        elif kind.startswith("audio/"):
            shown.append(f'<audio controls preload="none" src="{base}/{i}"></audio>')
    images = "\n".join(shown)
    page = ('<!doctype html><html lang="zh"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<style>body{margin:0;background:#111}img,audio{display:block;max-width:100%;margin:0 auto 8px}</style>'
            f"</head><body>{images}</body></html>")
    return HTMLResponse(page, headers={"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer",
                                       "Content-Security-Policy": "default-src 'none'; img-src 'self'; "
                                                                  "media-src 'self'; style-src 'unsafe-inline'"})


@router.get("/photos/{token}/{media_id}", responses=answers(404, 422))
def photo(token: str, media_id: int, services: Services) -> Response:
    if media_id not in _media_ids(services, token):
        raise HTTPException(status_code=404, detail="not found")
    with UnitOfWork(services.engine) as uow:
        return kept_response(uow.session, media_id)
