"""The council board (/console/council): proposals in columns by their step of 三会一评 with
co-signature counts, the meetings, and each meeting's agenda or minutes shown on the page and
downloaded as .docx or .md (/console/council/meetings/{id}/export.docx|.md, the link chat's
/export gives).

Views translate only: the board is handlers/council/board.py, the papers
handlers/council/export.py. For the council secretary and the director, as in chat.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Request, Response
from sqlalchemy.orm import Session

from bot.web.console.dashboard import phrases, staff_person
from bot.web.console.web import Staff, Viewer, render
from bot.web.deps import Services
from handlers.council import board, export, proposals
from handlers.errors import NotAllowed, NotFound
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()
MeetingId = Annotated[int, Path(ge=1, le=t.ROW_ID_MAX)]
PAPERS = {"": None, "agenda": False, "minutes": True}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

# key: (zh-Hans, zh-Hant, en)
WORDS: dict[str, tuple[str, str, str]] = {
    "council.title": ("居民议事会", "居民議事會", "Residents' council"),
    "column.collection": ("意见收集", "意見收集", "Collection"),
    "column.discussion": ("议题讨论", "議題討論", "Discussion"),
    "column.decision": ("议事决策", "議事決策", "Decision"),
    "column.execution": ("执行", "執行", "Execution"),
    "column.evaluation": ("评议", "評議", "Evaluation"),
    "column.closed": ("已结束（未通过、不予列入、已合并）", "已結束（未通過、不予列入、已合併）",
                      "Closed (not adopted, rejected, merged)"),
    "board.co_signs": ("附议 {count}", "附議 {count}", "{count} co-signatures"),
    "board.threshold": ("附议达到 {count} 人自动进入议题讨论。", "附議達到 {count} 人自動進入議題討論。",
                        "{count} co-signatures put a proposal up for discussion."),
    "board.empty": ("—", "—", "—"),
    "meetings.title": ("会议", "會議", "Meetings"),
    "meetings.none": ("还没有安排会议。", "還沒有安排會議。", "No meeting is scheduled."),
    "meetings.items": ("{count} 项", "{count} 項", "{count} items"),
    "meetings.held": ("已召开", "已召開", "held"),
    "paper.agenda": ("议程", "議程", "Agenda"),
    "paper.minutes": ("纪要", "紀要", "Minutes"),
    "paper.view": ("查看", "查看", "View"),
    "paper.back": ("返回议事会", "返回議事會", "Back to the board"),
}


def _secretary(session: Session, viewer: Viewer) -> t.Person:
    person = staff_person(session, viewer)
    if not proposals.is_secretary(session, person):
        raise HTTPException(status_code=403, detail="for the council secretary and the director")
    return person


@router.get("/console/council", include_in_schema=False)
def board_page(request: Request, viewer: Staff, services: Services) -> Response:
    t_ = phrases(viewer, WORDS)
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        person = _secretary(uow.session, viewer)
        try:
            shown = board.board(uow.session, person, now)
        except NotAllowed:
            raise HTTPException(status_code=403, detail="for the council secretary and the director") from None
        return render(request, "console/council.html", {
            "v": viewer, "t": t_, "lang": viewer.lang, "board": shown, "columns": list(board.COLUMNS)})


def _paper(session: Session, person: t.Person, meeting_id: int, paper: str,
           services: Services) -> tuple[t.Meeting, export.Paper]:
    if paper not in PAPERS:
        raise HTTPException(status_code=422, detail="paper is agenda or minutes")
    try:
        row = proposals.meeting(session, str(meeting_id), person.community_id)
    except NotFound:
        raise HTTPException(status_code=404, detail="no such meeting") from None
    return row, export.paper(session, row, services.clock.now(), minutes=PAPERS[paper])


@router.get("/console/council/meetings/{meeting_id}", include_in_schema=False)
def paper_page(meeting_id: MeetingId, request: Request, viewer: Staff, services: Services, paper: str = "") -> Response:
    """The paper as a page: the Markdown's table drawn as a table, not as pipes."""
    t_ = phrases(viewer, WORDS)
    with UnitOfWork(services.engine) as uow:
        person = _secretary(uow.session, viewer)
        row, doc = _paper(uow.session, person, meeting_id, paper, services)
        context: dict[str, Any] = {"v": viewer, "t": t_, "lang": viewer.lang, "meeting": row, "doc": doc,
                                   "paper": paper}
        return render(request, "console/council_paper.html", context)


def _download(body: bytes, media_type: str, name: str) -> Response:
    # The ASCII name for old clients, the UTF-8 one (RFC 6266) for the rest.
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"})


@router.get("/console/council/meetings/{meeting_id}/export.docx", include_in_schema=False)
def export_docx(meeting_id: MeetingId, viewer: Staff, services: Services, paper: str = "") -> Response:
    with UnitOfWork(services.engine) as uow:
        person = _secretary(uow.session, viewer)
        row, doc = _paper(uow.session, person, meeting_id, paper, services)
        name = export.file_name(uow.session, row, doc, "docx")
    return _download(export.docx_bytes(doc), DOCX, name)


@router.get("/console/council/meetings/{meeting_id}/export.md", include_in_schema=False)
def export_md(meeting_id: MeetingId, viewer: Staff, services: Services, paper: str = "") -> Response:
    with UnitOfWork(services.engine) as uow:
        person = _secretary(uow.session, viewer)
        row, doc = _paper(uow.session, person, meeting_id, paper, services)
        name = export.file_name(uow.session, row, doc, "md")
    return _download(export.to_markdown(doc).encode("utf-8"), "text/markdown; charset=utf-8", name)
