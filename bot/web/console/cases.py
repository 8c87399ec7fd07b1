"""The case list (/console/cases), its downloads, a case's page and the staff actions on it.

Views translate only: which cases a viewer sees and the filters are handlers/cases/listing.py, the
actions are handlers/cases/actions.py (the chat's own functions), the contact record is
handlers/registry/console_access.py.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse
from openpyxl import Workbook
from sqlalchemy.orm import Session

from bot.web.console.web import Staff, Viewer, check_csrf, render
from bot.web.deps import Services
from bot.web.media import CASE_NUMBER, describe
from handlers.cases import actions, corrections, lifecycle, listing
from handlers.errors import BadInput, GriddeskError, InvalidState, NotAllowed, NotFound
from handlers.registry import console_access, directory
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()
SHORT_TEXT = 40


def _filters(state: str, kind: str, category: str, urgent: str, overdue: str, grid: str, committee: str,
             post: str, holder: str, period: str, q: str) -> listing.Filters:
    return listing.Filters(state=state, kind=kind, category=category,
                             urgent={"1": True, "0": False}.get(urgent), overdue=overdue == "1", grid=grid,
                             committee=committee, post=post, holder=holder, period=period, q=q)


class ListQuery:
    """The list's query string: the filters, the page, and which part of the page is asked for."""

    def __init__(self, state: str = "", kind: str = "", category: str = "", urgent: str = "",
                 overdue: str = "", grid: str = "", committee: str = "", post: str = "", holder: str = "",
                 period: Annotated[str, Query(max_length=40)] = "",
                 q: Annotated[str, Query(max_length=listing.MAX_QUERY)] = "",
                 page: Annotated[int, Query(ge=1, le=100_000)] = 1, partial: str = "") -> None:
        self.values = {"state": state, "kind": kind, "category": category, "urgent": urgent,
                       "overdue": overdue, "grid": grid, "committee": committee, "post": post,
                       "holder": holder, "period": period, "q": q}
        self.filters = _filters(**self.values)
        self.page = page
        self.partial = partial

    def link(self, **changes: Any) -> str:
        """The query string of this list with `changes` (e.g. another page), empty values left out."""
        merged = {**self.values, "page": self.page, **changes}
        return urlencode({k: v for k, v in merged.items() if v not in ("", None) and not (k == "page" and v == 1)})


def _person(session: Session, viewer: Viewer) -> t.Person:
    person = session.get(t.Person, viewer.person_id)
    try:
        return listing.staff_viewer(person)
    except NotAllowed:
        raise HTTPException(status_code=403, detail=viewer.t("denied")) from None


def _bad(exc: GriddeskError) -> HTTPException:
    return HTTPException(status_code=422, detail=str(exc))


@router.get("/console", include_in_schema=False)
def console_home() -> RedirectResponse:
    return RedirectResponse("/console/cases", status_code=303)


@router.get("/console/cases", include_in_schema=False)
def case_list_page(request: Request, viewer: Staff, services: Services,
                   params: Annotated[ListQuery, Depends()]) -> Response:
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        person = _person(uow.session, viewer)
        try:
            found = listing.search(uow.session, person, params.filters, now, page=params.page)
        except BadInput as exc:
            raise _bad(exc) from None
        context = {"v": viewer, "t": viewer.t, "lang": viewer.lang, "found": found, "params": params,
                   "rows": listing.rows(uow.session, found.cases, now),
                   "choices": listing.choices(uow.session, person), "states": listing.STATES,
                   "kinds": listing.KINDS, "short": SHORT_TEXT}
        name = "console/_rows.html" if params.partial == "rows" else "console/cases.html"
        return render(request, name, context)


def _export_rows(services: Services, viewer: Viewer, params: ListQuery) -> list[list[str]]:
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        person = _person(uow.session, viewer)
        try:
            found = listing.export(uow.session, person, params.filters, now)
        except BadInput as exc:
            raise _bad(exc) from None
        lines = [[viewer.t(f"col.{c}") for c in ("number", "state", "kind", "category", "urgent", "text", "grid",
                                                 "post", "holder", "created", "due", "overdue")]]
        for row in listing.rows(uow.session, found, now):
            c = row.case
            lines.append([c.number, viewer.t(f"state.{c.state}"), viewer.t(f"kind.{c.kind}"), row.category,
                          viewer.t("yes") if c.urgent else "", c.text, row.grid, row.post, row.holder,
                          viewer.when(c.created_at), viewer.when(row.next_due),
                          viewer.t("yes") if row.overdue else ""])
    return lines


@router.get("/console/cases.csv", include_in_schema=False)
def export_csv(viewer: Staff, services: Services, params: Annotated[ListQuery, Depends()]) -> Response:
    out = io.StringIO()
    csv.writer(out).writerows(_export_rows(services, viewer, params))
    # The byte-order mark makes Excel read the file as UTF-8 (the Chinese intact).
    return Response(("\ufeff" + out.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="cases.csv"'})


@router.get("/console/cases.xlsx", include_in_schema=False)
def export_xlsx(viewer: Staff, services: Services, params: Annotated[ListQuery, Depends()]) -> Response:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("cases")
    for line in _export_rows(services, viewer, params):
        sheet.append(line)
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="cases.xlsx"'})


def _case(session: Session, person: t.Person, number: str) -> t.Case:
    if not CASE_NUMBER.fullmatch(number):
        raise HTTPException(status_code=404, detail="not found")
    try:
        return lifecycle.for_staff(session, number, person)
    except NotFound:
        raise HTTPException(status_code=404, detail="not found") from None


def _timeline(session: Session, viewer: Viewer, case: t.Case) -> list[dict[str, Any]]:
    entries = []
    for ev in lifecycle.history(session, case):
        actor = session.get(t.Person, ev.actor_person_id) if ev.actor_person_id else None
        who = actor.name if actor else viewer.t("actor.resident" if ev.actor_resident_id else "actor.system")
        entries.append({"at": ev.at, "when": viewer.when(ev.at), "step": viewer.t(f"step.{ev.action}"),
                        "who": who, "note": ev.note})
    return entries


def _card(session: Session, viewer: Viewer, case: t.Case) -> dict[str, Any]:
    category = directory.category(session, case.community_id, case.category)
    building = session.get(t.Building, case.building_id) if case.building_id else None
    grid = session.get(t.Grid, case.grid_id) if case.grid_id else None
    holder = session.get(t.Person, case.holder_id) if case.holder_id else None
    post = session.get(t.Post, case.post_id) if case.post_id else None
    return {"case": case, "category": category.name if category else case.category,
            "building": building.name if building else "", "grid": grid.name if grid else "",
            "holder": holder.name if holder else "", "post": post.name if post else "",
            "next_due": lifecycle.next_due(case)}


@router.get("/console/cases/{number}", include_in_schema=False)
def case_page(number: str, request: Request, viewer: Staff, services: Services, partial: str = "",
              done: str = "", error: str = "") -> Response:
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        person = _person(s, viewer)
        case = _case(s, person, number)
        context: dict[str, Any] = {"v": viewer, "t": viewer.t, "lang": viewer.lang, **_card(s, viewer, case),
                                   "timeline": _timeline(s, viewer, case)}
        if partial == "live":
            return render(request, "console/_live.html", context)
        contact = None
        if listing.may_see_contact(s, case, person):
            resident = s.get(t.Resident, case.resident_id)
            assert resident is not None
            address = " ".join(x for x in (context["building"],
                                           f"{resident.unit}-{resident.room}".strip("-")) if x)
            contact = {"name": resident.name, "phone": resident.phone, "address": address}
            # Every showing of a phone or address is recorded (PIPL): who, when, which case.
            console_access.record_contact_view(s, person, case, now)
            uow.commit()
        sent = [describe(a) for a in lifecycle.attachments_of(s, case)]
        context |= {"contact": contact, "photos": [a for a in sent if a["kind"] == "photo"],
                    "voices": [a for a in sent if a["kind"] == "voice"],
                    "locations": [a for a in sent if a["kind"] == "location"],
                    "posts": [(p.code, p.name) for p in directory.posts_of(s, case.community_id)
                              if p.id != case.post_id],
                    "kinds": [(k, viewer.t(f"kind.{k}")) for k in lifecycle.CASE_KINDS],
                    "categories": [(c.code, c.name) for c in corrections.categories_of(s, case.community_id)],
                    "done": viewer.t(f"button.{_BUTTON.get(done, 'reply')}") if done in _BUTTON else "",
                    "error": viewer.t(f"error.{error}") if error in _ERRORS else ""}
        return render(request, "console/case.html", context)


_BUTTON = {"ack": "acknowledge", "reply": "reply", "transfer": "transfer", "resolve": "resolve",
           "return": "return", "reclassify": "reclassify"}
_ERRORS = ("invalid_state", "text_needed", "post_needed", "usage")


@router.post("/console/cases/{number}/act", include_in_schema=False)
def act(number: str, request: Request, viewer: Staff, services: Services,
        action: Annotated[str, Form(max_length=16)] = "", text: Annotated[str, Form(max_length=2000)] = "",
        post: Annotated[str, Form(max_length=32)] = "", csrf: Annotated[str, Form(max_length=128)] = "",
        kind: Annotated[str, Form(max_length=32)] = "",
        category: Annotated[str, Form(max_length=32)] = "") -> Response:
    check_csrf(request, viewer, csrf)
    page = f"/console/cases/{number}"
    with UnitOfWork(services.engine) as uow:
        person = _person(uow.session, viewer)
        case = _case(uow.session, person, number)
        try:
            actions.act(uow.session, case, person, action, services.clock.now(), text=text, post=post,
                             kind=kind, category=category)
        except InvalidState:
            return RedirectResponse(f"{page}?error=invalid_state", status_code=303)
        except BadInput as exc:
            reason = str(exc.values.get("reason", "usage"))
            return RedirectResponse(f"{page}?error={reason if reason in _ERRORS else 'usage'}", status_code=303)
        except NotFound:
            return RedirectResponse(f"{page}?error=usage", status_code=303)
        uow.commit()
    services.sender.wake()  # the resident's notice goes out now, as after a chat button
    return RedirectResponse(f"{page}?done={action}", status_code=303)


@router.get("/console/contact-views", include_in_schema=False)
def contact_views(request: Request, viewer: Staff, services: Services) -> Response:
    with UnitOfWork(services.engine) as uow:
        person = _person(uow.session, viewer)
        try:
            views = console_access.contact_views(uow.session, person)
        except NotAllowed:
            raise HTTPException(status_code=403, detail="for the director") from None
        return render(request, "console/contact_views.html",
                      {"v": viewer, "t": viewer.t, "lang": viewer.lang, "views": views})
