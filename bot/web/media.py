"""What residents sent with a case, for the web chat.

- `GET /api/cases/{number}/attachments`: the case's photos, voice messages and locations as a
  JSON list. A kept photo or voice message has `url` (`/media/{id}`), one known only by the
  platform's reference (its copy could not be fetched) has `url: null`; a location has
  `latitude`, `longitude` and `label`.
- `GET /media/{id}`: the kept bytes with their content type.

Both answer only a signed-in web chat user who may see the case: staff who may handle it (as
the case desk allows), or the resident who reported it. Anyone else gets 404, whether or not the
case or the media exists.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy.orm import Session

from bot.web.deps import Address, Services, answers, web_identity
from handlers.cases import lifecycle
from handlers.errors import GriddeskError
from storage import media
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()
# A case number (ZN-20261121-0007); anything else names no case.
CASE_NUMBER = re.compile(r"[A-Za-z]{2,4}-[0-9]{8}-[0-9]{4}")
# Shown in the page as they are; any other type is offered as a download, never rendered.
INLINE = ("image/", "audio/")


def _viewer(session: Session, address: str) -> tuple[t.Person | None, t.Resident | None]:
    ident = web_identity(session, address)
    person = session.get(t.Person, ident.person_id) if ident.person_id else None
    resident = session.get(t.Resident, ident.resident_id) if ident.resident_id else None
    return person, resident


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="not found")


def describe(att: t.Attachment) -> dict[str, Any]:
    """One attachment as the page renders it."""
    if att.kind == "location":
        return {"id": att.id, "kind": att.kind, "latitude": att.latitude, "longitude": att.longitude,
                "label": att.ref, "at": att.created_at.isoformat()}
    kept = media.id_in(att.ref)
    return {"id": att.id, "kind": att.kind, "url": f"/media/{kept}" if kept is not None else None,
            "at": att.created_at.isoformat()}


@router.get("/api/cases/{number}/attachments", responses=answers(401, 404))
def case_attachments(number: str, address: Address, services: Services) -> list[dict[str, Any]]:
    if not CASE_NUMBER.fullmatch(number):
        raise _not_found()
    with UnitOfWork(services.engine) as uow:
        person, resident = _viewer(uow.session, address)
        try:
            case = lifecycle.for_viewer(uow.session, number, person=person, resident=resident)
        except GriddeskError:
            raise _not_found() from None
        return [describe(att) for att in lifecycle.attachments_of(uow.session, case)]


@router.get("/media/{media_id}", responses=answers(401, 404, 422))
def get_media(media_id: int, address: Address, services: Services) -> Response:
    with UnitOfWork(services.engine) as uow:
        person, resident = _viewer(uow.session, address)
        if lifecycle.case_with_media(uow.session, media_id, person=person, resident=resident) is None:
            raise _not_found()
        return kept_response(uow.session, media_id)


def kept_response(session: Session, media_id: int) -> Response:
    """The kept bytes of `media_id` with headers that let them show and never run; 404 when gone."""
    row = media.get(session, media_id)
    if row is None:
        raise _not_found()
    data, content_type = row.data, row.content_type
    headers = {
        "Cache-Control": "private, max-age=86400",
        "X-Content-Type-Options": "nosniff",
        # Opened on its own, the file runs nothing, whatever it claims to be.
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; sandbox",
    }
    if not content_type.startswith(INLINE):
        headers["Content-Disposition"] = f'attachment; filename="media-{media_id}"'
    return Response(content=data, media_type=content_type, headers=headers)
