"""The front desk's queue (/console/triage): returned and unroutable cases, each routed in one
step — pick a post, and the chat's own transfer tells the new holder and the resident.

Views translate only: the queue and the routing are handlers/cases/triage.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from bot.web.console.dashboard import phrases, staff_person
from bot.web.console.web import Staff, Viewer, check_csrf, render
from bot.web.deps import Services
from bot.web.media import CASE_NUMBER
from handlers.cases import lifecycle, triage
from handlers.errors import InvalidState, NotAllowed, NotFound
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()

# key: (zh-Hans, zh-Hant, en)
WORDS: dict[str, tuple[str, str, str]] = {
    "triage.title": ("前台分派", "前台分派", "Front desk triage"),
    "triage.intro": (("退回的工单和无法自动分派的工单（地址不明、类别无人负责、AB 岗均不在岗）。选择岗位即可转办，"
                     "居民和新承办人会收到与聊天中相同的通知。"),
                     ("退回的工單和無法自動分派的工單（地址不明、類別無人負責、AB 崗均不在崗）。選擇崗位即可轉辦，"
                     "居民和新承辦人會收到與聊天中相同的通知。"),
                     ("Cases given back and cases that could not be routed (unknown address, a category nobody "
                     "owns, both holders away). Pick a post: the resident and the new holder are told as from chat.")),
    "triage.none": ("没有待分派的工单。", "沒有待分派的工單。", "Nothing waits to be routed."),
    "triage.count": ("待分派 {count} 件", "待分派 {count} 件", "{count} waiting"),
    "triage.why": ("原因", "原因", "Why here"),
    "triage.returned": ("退单", "退單", "returned"),
    "triage.unrouted": ("未能自动分派", "未能自動分派", "not routable"),
    "triage.route": ("分派", "分派", "Route"),
    "triage.note": ("说明（可选）", "說明（可選）", "Note (optional)"),
    "triage.routed": ("工单 {number} 已转至 {post}。", "工單 {number} 已轉至 {post}。", "{number} went to {post}."),
    "triage.failed": ("工单 {number} 未能转办：{reason}", "工單 {number} 未能轉辦：{reason}",
                      "{number} was not routed: {reason}"),
    "triage.address": ("楼栋", "樓棟", "Building"),
}


def _allowed(session: Session, viewer: Viewer) -> t.Person:
    person = staff_person(session, viewer)
    try:
        triage.check_allowed(person)
    except NotAllowed:
        raise HTTPException(status_code=403, detail="for the front desk and the director") from None
    return person


@router.get("/console/triage", include_in_schema=False)
def triage_page(request: Request, viewer: Staff, services: Services, routed: str = "", to: str = "",
                failed: str = "") -> Response:
    t_ = phrases(viewer, WORDS)
    with UnitOfWork(services.engine) as uow:
        person = _allowed(uow.session, viewer)
        waiting = triage.queue(uow.session, person, services.clock.now())
        posts = [(p.code, p.name) for p in triage.posts(uow.session, person)]
    message = error = ""
    if routed and CASE_NUMBER.fullmatch(routed):
        names = dict(posts)
        message = t_("triage.routed", number=routed, post=names.get(to, to))
    if failed and CASE_NUMBER.fullmatch(failed):
        error = t_("triage.failed", number=failed, reason=t_("error.invalid_state"))
    return render(request, "console/triage.html", {"v": viewer, "t": t_, "lang": viewer.lang, "waiting": waiting,
                                                    "posts": posts, "message": message, "error": error})


@router.post("/console/triage/{number}", include_in_schema=False)
def route(number: str, request: Request, viewer: Staff, services: Services,
          post: Annotated[str, Form(max_length=32)] = "", note: Annotated[str, Form(max_length=2000)] = "",
          csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    check_csrf(request, viewer, csrf)
    if not CASE_NUMBER.fullmatch(number):
        raise HTTPException(status_code=404, detail="not found")
    with UnitOfWork(services.engine) as uow:
        person = _allowed(uow.session, viewer)
        try:
            case = lifecycle.for_staff(uow.session, number, person)
            triage.route(uow.session, case, person, post, note, services.clock.now())
        except NotFound:
            raise HTTPException(status_code=404, detail="no such case or post") from None
        except InvalidState:
            return RedirectResponse(f"/console/triage?failed={number}", status_code=303)
        uow.commit()
    services.sender.wake()  # the resident's and the new holder's notices go out now, as from chat
    return RedirectResponse(f"/console/triage?routed={number}&to={post}", status_code=303)
