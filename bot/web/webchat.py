"""The web chat: a page, a send endpoint, an inbox that the page polls and the history it
shows after a reload."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.responses import FileResponse, RedirectResponse
from PIL import Image
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from bot.channels.base import Attachment, Incoming, Reply
from bot.channels.webchat import CHANNEL
from bot.web.auth import COOKIE, LINK_TTL, sign, verify
from bot.web.deps import (
    Address,
    RowIdQuery,
    Services,
    Text,
    answers,
    end_signed_session,
    web_identity,
)
from handlers.cases import offers
from handlers.notify import ensure_identity
from handlers.replies import pick_language
from storage import chat_history, media, outbox
from storage import tables as t
from storage.state import LockTimeout
from storage.unit_of_work import UnitOfWork

router = APIRouter()
STATIC = Path(__file__).parent / "static"
CURSOR = re.compile(r"(said|reply|notice):([0-9]{1,10})")


class SendBody(BaseModel):
    text: Text | None = None
    action: Text | None = Field(default=None, max_length=64)
    label: Text | None = Field(default=None, max_length=200)  # the pressed button's, for the history
    # The page's id for this message, reused when it sends the message again after a lost answer.
    client_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[ -~]+$")


ClientId = Annotated[str | None, Field(default=None, min_length=1, max_length=64, pattern=r"^[ -~]+$")]
# What a photo may be: the formats every browser shows, as Pillow names them.
PHOTO_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


class LocationBody(BaseModel):
    """Where the person is, as the browser's geolocation gives it."""

    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    client_id: ClientId = None


class PersonaBody(BaseModel):
    who: Text = Field(max_length=64)


def _set_session(response: Response, secret: str, address: str) -> None:
    response.set_cookie(COOKIE, sign(secret, address), max_age=LINK_TTL, httponly=True, samesite="lax")


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


def ensure_web_identity(services: Any, address: str) -> bool:
    """Make sure the web chat address belongs to an existing person or resident."""
    kind, _, ref = address.partition(":")
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        if kind == "person":
            person = s.scalars(select(t.Person).where(col(t.Person.code) == ref,
                                                      col(t.Person.active).is_(True))).first()
            if person is None:
                return False
            ensure_identity(s, CHANNEL, address, services.clock.now(), person=person)
        elif kind == "resident":
            resident = t.by_id(s, t.Resident, ref)
            if resident is None:
                return False
            ensure_identity(s, CHANNEL, address, services.clock.now(), resident=resident)
        else:
            return False
        uow.commit()
    return True


@router.get("/login/{token}", include_in_schema=False)
def login(token: str, services: Services) -> RedirectResponse:
    """A personal link (resident) or login link (staff) signed by `griddesk webchat link`."""
    address = verify(services.settings.secret_key, token)
    if address is None or not ensure_web_identity(services, address):
        raise HTTPException(status_code=403, detail="this link is invalid or has expired")
    response = RedirectResponse("/", status_code=303)
    _set_session(response, services.settings.secret_key, address)
    return response


@router.post("/api/logout", responses=answers(413))
def logout(request: Request, response: Response, services: Services) -> dict[str, bool]:
    end_signed_session(services, request.cookies.get(COOKIE, ""))
    response.delete_cookie(COOKIE)
    return {"ok": True}


@router.get("/api/me")
def me(services: Services) -> dict[str, Any]:
    """What the page needs before sign-in: whether the persona picker is on."""
    return {"demo": services.demo}


@router.get("/api/session", responses=answers(401))
def session_info(address: Address, services: Services) -> dict[str, Any]:
    with UnitOfWork(services.engine) as uow:
        ident = web_identity(uow.session, address)
        if ident.person_id:
            person = uow.session.get(t.Person, ident.person_id)
            assert person is not None
            return {"address": address, "kind": "staff", "name": person.name, "roles": person.roles,
                    "demo": services.demo}
        resident = uow.session.get(t.Resident, ident.resident_id)
        building = uow.session.get(t.Building, resident.building_id) if resident and resident.building_id else None
        return {"address": address, "kind": "resident", "name": resident.name if resident else "",
                "building": building.name if building else "", "demo": services.demo}


@router.get("/api/demo/personas", responses=answers(404))
def personas(services: Services) -> dict[str, Any]:
    """Who a newcomer can be in the demo: residents by building, and every staff member."""
    if not services.demo:
        raise HTTPException(status_code=404, detail="the persona picker is off")
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        buildings = {b.id: b
                     for b in s.scalars(select(t.Building).where(col(t.Building.active).is_(True)))}
        residents = [
            {"who": f"resident:{r.id}", "name": r.name, "building": buildings[r.building_id].name
             if r.building_id in buildings else ""}
            for r in s.scalars(select(t.Resident).where(col(t.Resident.demo).is_(True))
                               .order_by(col(t.Resident.id)))
        ]
        staff = []
        for p in s.scalars(select(t.Person).where(col(t.Person.active).is_(True))
                           .order_by(col(t.Person.code))):
            # Their own posts (A) first, so the council secretary is not shown as the front desk
            # she covers as its B holder.
            held = offers.posts_held(s, p)
            staff.append({"who": f"person:{p.code}", "name": p.name, "roles": p.roles.split(","),
                          "posts": [x.name for x in held.own], "covering": [x.name for x in held.covering]})
        new = [{"who": f"building:{b.code}", "building": b.name} for b in
               sorted(buildings.values(), key=lambda b: b.code)]
    return {"residents": residents, "staff": staff, "buildings": new}


@router.post("/api/demo/persona", responses=answers(404, 413, 422))
def pick_persona(body: PersonaBody, services: Services, response: Response) -> dict[str, str]:
    if not services.demo:
        raise HTTPException(status_code=404, detail="the persona picker is off")
    kind, _, ref = body.who.partition(":")
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        if kind == "person":
            person = s.scalars(select(t.Person).where(col(t.Person.code) == ref)).first()
            if person is None:
                raise HTTPException(status_code=404, detail=f"no staff member {ref!r}")
            address = f"person:{person.code}"
            ensure_identity(s, CHANNEL, address, now, person=person)
        elif kind == "resident":
            resident = t.by_id(s, t.Resident, ref)
            if resident is None or not resident.demo:
                raise HTTPException(status_code=404, detail=f"no demo resident {ref!r}")
            address = f"resident:{resident.id}"
            ensure_identity(s, CHANNEL, address, now, resident=resident)
        elif kind == "building":
            building = s.scalars(select(t.Building).where(col(t.Building.code) == ref)).first()
            if building is None:
                raise HTTPException(status_code=404, detail=f"no building {ref!r}")
            grid = s.get(t.Grid, building.grid_id)
            committee = s.get(t.Committee, grid.committee_id) if grid else None
            assert committee is not None
            resident = t.Resident(community_id=committee.community_id, building_id=building.id,
                                  demo=True, created_at=now)
            s.add(resident)
            s.flush()
            address = f"resident:{resident.id}"
            ensure_identity(s, CHANNEL, address, now, resident=resident)
        else:
            raise HTTPException(status_code=422, detail="who is person:<code>, resident:<id> or building:<code>")
        uow.commit()
    _set_session(response, services.settings.secret_key, address)
    return {"address": address}


@router.post("/api/chat/send", responses=answers(401, 413, 422, 503))
async def send(body: SendBody, address: Address, services: Services) -> dict[str, Any]:
    if body.text is None and body.action is None:
        raise HTTPException(status_code=422, detail="send 'text' or 'action'")
    return await _turn(services, address, Incoming(channel=CHANNEL, address=address, text=body.text or "",
                                                   action=body.action),
                       said=_said(body, services.pipeline.max_text), client_id=body.client_id)


@router.post("/api/chat/photo", responses=answers(401, 413, 422, 503))
async def send_photo(address: Address, services: Services,
                     photo: Annotated[UploadFile, File(description="a JPEG, PNG, GIF or WebP image")],
                     text: Annotated[Text, Form(max_length=2000)] = "",
                     client_id: Annotated[str | None, Form(min_length=1, max_length=64,
                                                           pattern=r"^[ -~]+$")] = None) -> dict[str, Any]:
    """A photo (multipart field `photo`, with an optional caption `text`), handled like a photo
    sent on Telegram or WeChat: kept (storage.media, the same size limit) before the message is
    read, and attached to the case it files or to the matter being described."""
    data = await photo.read(media.MAX_MEDIA_BYTES + 1)
    if len(data) > media.MAX_MEDIA_BYTES:
        raise HTTPException(status_code=413, detail=f"a photo is at most {media.MAX_MEDIA_BYTES} bytes")
    content_type = await anyio.to_thread.run_sync(_photo_type, data)
    if content_type is None:
        raise HTTPException(status_code=422, detail="photo: not a JPEG, PNG, GIF or WebP image")

    def keep(incoming: Incoming) -> Incoming:
        with UnitOfWork(services.engine) as uow:
            ref = media.ref_of(media.put(uow.session, data, content_type, now=services.clock.now()))
            uow.commit()
        return dataclasses.replace(incoming, attachments=(Attachment(kind="photo", ref=ref),))

    said = ("📷 " + text.strip()).strip()
    return await _turn(services, address, Incoming(channel=CHANNEL, address=address, text=text),
                       said=said, client_id=client_id, keep=keep)


@router.post("/api/chat/location", responses=answers(401, 413, 422, 503))
async def send_location(body: LocationBody, address: Address, services: Services) -> dict[str, Any]:
    """Where the person is (the browser's geolocation), handled like a location shared on
    Telegram: a newcomer is placed in the nearest building, a resident's matter carries it."""
    incoming = Incoming(channel=CHANNEL, address=address, attachments=(
        Attachment(kind="location", latitude=body.latitude, longitude=body.longitude),))
    return await _turn(services, address, incoming, said=f"📍 {body.latitude:.5f}, {body.longitude:.5f}",
                       client_id=body.client_id)


def _photo_type(data: bytes) -> str | None:
    """The content type of an image Pillow can read whole, among PHOTO_TYPES; None otherwise
    (not an image, cut short, or a decompression bomb)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow warns of very large images: refused
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                width, height = image.size
                image.verify()
    except Exception:  # noqa: BLE001 (whatever Pillow makes of hostile bytes, it is no photo)
        return None
    if not width or not height:
        return None
    return PHOTO_TYPES.get(kind or "")


async def _turn(services: Any, address: str, incoming: Incoming, *, said: str, client_id: str | None,
                keep: Any = None) -> dict[str, Any]:
    """Serve one thing the page sent and keep it in the history with its replies; a retry with
    the same `client_id` gets the first answer. `keep(incoming)` runs under the address's lock
    once the retry check passed (it stores a photo)."""
    action = incoming.action
    queued = False  # whether the turn's transaction queued a notice for a sender

    def record(session: Session, replies: list[Reply], now: dt.datetime) -> None:
        nonlocal queued
        queued = outbox.queued_pending(session)
        # In the pipeline's own transaction: the turn is kept exactly when its work commits.
        chat_history.record_turn(
            session, channel=CHANNEL, address=address, said=said, action=action or "",
            replies=[(r.text, [[b.to_json() for b in row] for row in r.buttons]) for r in replies], now=now,
            client_id=client_id,
        )

    def answered_before(incoming: Incoming) -> Incoming:
        # Under the address's lock, so a retry that waited for the first send finds its turn.
        if client_id is not None:
            earlier = _answer_of(services, address, client_id)
            if earlier is not None:
                raise _Answered(earlier)
        return keep(incoming) if keep is not None else incoming

    try:
        replies = await services.pipeline.handle(incoming, deliver=record, prepare=answered_before)
    except _Answered as answered:
        return {"replies": answered.replies}
    except IntegrityError:
        # Only a send with the same id committed by another process meanwhile (the address's
        # lock was lost, say with Redis) gets here: this turn rolled back, the first one answers.
        earlier = await anyio.to_thread.run_sync(_answer_of, services, address, client_id) if client_id else None
        if earlier is None:
            raise
        return {"replies": earlier}
    except LockTimeout:
        # An earlier message of this person's is still being served (far longer than any should).
        raise HTTPException(status_code=503, detail="your previous message is still being handled; "
                                                     "send this one again in a moment") from None
    if queued:  # web chat replies are answered here and its notices stored delivered
        services.sender.wake()
    return {"replies": [r.to_json() for r in replies]}


class _Answered(Exception):
    """A send whose client id already has a stored turn: its replies, as the send answered them."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        super().__init__("already answered")
        self.replies = replies


def _answer_of(services: Any, address: str, client_id: str) -> list[dict[str, Any]] | None:
    """The answer given to the address's send with `client_id`, None when it has not committed."""
    with UnitOfWork(services.engine) as uow:
        replies = chat_history.answered_turn(uow.session, channel=CHANNEL, address=address,
                                             client_id=client_id)
    if replies is None:
        return None
    return [{"text": text, "buttons": buttons, "expects_text": False} for text, buttons in replies]


def _said(body: SendBody, max_chars: int) -> str:
    """The person's side of a turn as the page shows it: the pressed button's label, else the text.

    The pipeline refuses a text over `max_chars` with a reply; only its opening is kept, so an
    oversized message costs no more to store than an accepted one.
    """
    if body.action:
        return body.label or body.action
    text = body.text or ""
    return text if len(text) <= max_chars else text[:max_chars] + "…"


@router.get("/api/chat/inbox", responses=answers(401, 422))
def inbox(address: Address, services: Services, after: RowIdQuery = 0, limit: int = 50) -> dict[str, Any]:
    """Notices delivered to this address after id `after`, oldest first."""
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(
            select(t.Outbox)
            .where(col(t.Outbox.channel) == CHANNEL, col(t.Outbox.address) == address,
                   col(t.Outbox.id) > after, col(t.Outbox.state) == "sent")
            .order_by(col(t.Outbox.id))
            .limit(min(max(limit, 1), 200))
        ).all()
        return {"messages": [
            {"id": r.id, "text": r.text, "buttons": r.buttons, "at": r.created_at.isoformat()}
            for r in rows
        ]}


@router.get("/api/chat/history", responses=answers(401, 422))
def history(address: Address, services: Services, before: str | None = None, limit: int = 50) -> dict[str, Any]:
    """The address's conversation, oldest first: what it sent ("said", with the pressed button's
    `action` or null), the direct replies ("reply") and the delivered notices ("notice", the
    inbox's rows).

    Without `before` the newest page; the answer's `before` ("kind:id", null at the start) asks
    for the page older than it. `last_notice_id` is where polling the inbox carries on.
    """
    position = None
    if before is not None:
        match = CURSOR.fullmatch(before)
        ident = t.row_id(match[2]) if match is not None else None
        if match is None or ident is None:  # past the id columns' range: refused before the database
            raise HTTPException(status_code=422, detail="before is said:<id>, reply:<id> or notice:<id>")
        position = (match[1], ident)
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        try:
            page = chat_history.read_page(s, channel=CHANNEL, address=address, before=position,
                                          limit=min(max(limit, 1), 200))
        except LookupError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        pressed = chat_history.pressed_later(s, channel=CHANNEL, address=address, items=page.items)
        offered: dict[str, bool | None] = {}

        def live(item: chat_history.Item, action: str) -> bool:
            # The case desk says whether a step on a case is still offered; any other button
            # (a choice in a dialogue) was used up once pressed.
            if action not in offered:
                offered[action] = offers.still_offered(s, action)
            known = offered[action]
            return known if known is not None else (item.kind, item.id, action) not in pressed

        messages = [
            {"kind": i.kind, "id": i.id, "text": i.text, "at": i.at.isoformat(),
             "buttons": [[{**b, "live": live(i, b.get("action", ""))} for b in row] for row in i.buttons]}
            | ({"action": i.action or None} if i.kind == "said" else {})
            for i in page.items
        ]
        welcome = [] if page.more else [
            {"text": r.text, "buttons": [[{**b.to_json(), "live": True} for b in row] for row in r.buttons]}
            for r in _welcome(s, address)]
    first = page.items[0] if page.items else None
    return {
        "messages": messages,
        "before": f"{first.kind}:{first.id}" if page.more and first else None,
        "last_notice_id": page.last_notice_id,
        "welcome": welcome,
    }


def _welcome(session: Session, address: str) -> list[Reply]:
    """What the conversation opens with, for the person behind the address, in their language."""
    ident = web_identity(session, address)
    person = session.get(t.Person, ident.person_id) if ident.person_id else None
    resident = session.get(t.Resident, ident.resident_id) if ident.resident_id else None
    lang = pick_language(ident.language, person.language if person else None,
                         resident.language if resident else None)
    return offers.welcome(session, lang, person=person, resident=resident)
