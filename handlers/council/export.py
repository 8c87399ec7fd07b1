"""A council meeting on paper: its agenda before the meeting, its minutes after, as Markdown or .docx.

    paper = export.paper(session, meeting, now)
    export.write_docx(paper, Path("agenda.docx"))   # ready to print
    text = export.to_markdown(paper)

The documents are the council's own records and are written in Chinese whatever the reader's
chat language, as they are printed and filed with the community's other papers.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from handlers.council import proposals
from handlers.registry import directory
from storage import tables as t
from storage.tables import MeetingKind, ProposalStage

KIND_NAMES = {
    MeetingKind.COLLECTION: "意见收集会",
    MeetingKind.DISCUSSION: "议题讨论会",
    MeetingKind.DECISION: "议事决策会",
    MeetingKind.EVALUATION: "述职评议会",
}
RATING_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}


@dataclass(frozen=True)
class Paper:
    """What a meeting document says, independent of its format."""

    title: str
    meta: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    sections: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    minutes: bool = False


def _local(community: t.Community, utc: dt.datetime) -> str:
    local = directory.calendar_of(community).to_local(utc)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def _day(community: t.Community, utc: dt.datetime | None) -> str:
    if utc is None:
        return "—"
    local = directory.calendar_of(community).to_local(utc)
    return f"{local.year}年{local.month}月{local.day}日"


def _proposer(session: Session, proposal: t.Proposal) -> str:
    resident = session.get(t.Resident, proposal.proposer_id)
    return resident.name if resident and resident.name else "居民"


def _post_name(session: Session, post_id: int | None) -> str:
    post = session.get(t.Post, post_id) if post_id else None
    return post.name if post else "—"


def _case_number(session: Session, case_id: int | None) -> str:
    case = session.get(t.Case, case_id) if case_id else None
    return case.number if case else ""


def outcome(session: Session, community: t.Community, proposal: t.Proposal) -> str:
    """What became of an item, in the words of the minutes."""
    stage = proposal.stage
    if stage in (ProposalStage.COLLECTED, ProposalStage.ON_AGENDA):
        return "待议"
    if stage == ProposalStage.DISCUSSION:
        return "转入议题讨论会"
    if stage == ProposalStage.DECISION:
        return "提交议事决策会"
    if stage == ProposalStage.MERGED:
        merged = (
            session.get(t.Proposal, proposal.merged_into_id) if proposal.merged_into_id else None
        )
        return f"并入 {merged.number}" if merged else "已合并"
    if stage == ProposalStage.REJECTED:
        case = _case_number(session, proposal.case_id)
        return f"不予列入议题：{proposal.reason}" + (f"（已转为工单 {case}）" if case else "")
    if stage == ProposalStage.NOT_ADOPTED:
        return f"不通过：{proposal.reason}"
    status = {
        ProposalStage.ADOPTED: "通过",
        ProposalStage.IN_EXECUTION: "通过，执行中",
        ProposalStage.DONE: "通过，已办结",
        ProposalStage.EVALUATED: "通过，已评议",
    }[ProposalStage(stage)]
    return (
        f"{status}：{proposal.decision_text}（执行：{_post_name(session, proposal.executing_post_id)}，"
        f"期限 {_day(community, proposal.execution_due)}）"
    )


def paper(
    session: Session, meeting: t.Meeting, now: dt.datetime, *, minutes: bool | None = None
) -> Paper:
    """The agenda while the meeting is ahead, the minutes once it has started (or as asked)."""
    community = directory.community(session, meeting.community_id)
    if minutes is None:
        minutes = meeting.starts_at <= now
    kind = MeetingKind(meeting.kind)
    title = f"{proposals.council_name(community)} {KIND_NAMES[kind]} {'纪要' if minutes else '议程'}"
    meta = (
        f"时间：{_local(community, meeting.starts_at)}",
        f"地点：{meeting.place or '—'}",
        f"会议编号：{meeting.id}",
    )
    items = proposals.agenda(session, meeting)
    if kind == MeetingKind.EVALUATION:
        return _evaluation_paper(session, community, title, meta, items, minutes)
    rows = []
    for i, item in enumerate(items, start=1):
        p = item.proposal
        if minutes:
            last = outcome(session, community, p)
        else:
            notes = (
                [f"可能与 {'、'.join(d.number for d in item.duplicates)} 重复"]
                if item.duplicates
                else []
            )
            last = "；".join(notes) or "—"
        rows.append((str(i), p.number, p.title, _proposer(session, p), str(item.co_signs), last))
    headers = ("序号", "编号", "议题", "提议人", "附议人数", "结果" if minutes else "备注")
    sections = [
        (
            "议题内容",
            tuple(
                f"{item.proposal.number} {item.proposal.title}：{item.proposal.text}"
                for item in items
            ),
        )
    ]
    if minutes:
        decided = tuple(
            f"{item.proposal.number} {outcome(session, community, item.proposal)}"
            for item in items
            if item.proposal.decided_at is not None
        )
        if decided:
            sections.append(("决定事项", decided))
    return Paper(
        title=title,
        meta=meta,
        headers=headers,
        rows=tuple(rows),
        sections=tuple(sections),
        minutes=minutes,
    )


def _evaluation_paper(
    session: Session,
    community: t.Community,
    title: str,
    meta: tuple[str, ...],
    items: list[proposals.AgendaItem],
    minutes: bool,
) -> Paper:
    rows = []
    for i, item in enumerate(items, start=1):
        p = item.proposal
        counts = proposals.evaluation_counts(session, p)
        rated = sum(counts.values())
        summary = "、".join(f"{RATING_NAMES[k]} {v}" for k, v in counts.items())
        rows.append(
            (
                str(i),
                p.number,
                p.title,
                p.decision_text or "—",
                _post_name(session, p.executing_post_id),
                _day(community, p.execution_due),
                f"{summary}（共 {rated} 人）",
            )
        )
    headers = ("序号", "编号", "议题", "决定", "执行岗位", "期限", "群众评议")
    return Paper(title=title, meta=meta, headers=headers, rows=tuple(rows), minutes=minutes)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Paper) -> str:
    lines = [f"# {doc.title}", ""]
    lines += [f"- {m}" for m in doc.meta]
    lines += ["", "| " + " | ".join(doc.headers) + " |", "|" + "---|" * len(doc.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in doc.rows]
    if not doc.rows:
        lines.append("| " + " | ".join(["—"] * len(doc.headers)) + " |")
    for heading, paragraphs in doc.sections:
        if paragraphs:
            lines += ["", f"## {heading}", ""] + [
                f"{i}. {p}" for i, p in enumerate(paragraphs, start=1)
            ]
    return "\n".join(lines) + "\n"


def to_text(doc: Paper) -> str:
    """The paper as chat shows it: the title, the facts, one block per item (no table pipes)."""
    lines = [doc.title, *doc.meta, ""]
    for row in doc.rows:
        lines.append(f"{row[0]}. " + " · ".join(f"{h}：{c}" for h, c in zip(doc.headers[1:], row[1:], strict=True)
                                                 if c and c != "—"))
    if not doc.rows:
        lines.append("—")
    for heading, paragraphs in doc.sections:
        if paragraphs:
            lines += ["", f"【{heading}】"] + [f"{i}. {p}" for i, p in enumerate(paragraphs, start=1)]
    return "\n".join(lines)


# Where the console is reached (Settings.public_url), for the download links chat replies give;
# set when the app's services are built.
_site = {"url": "http://127.0.0.1:8000"}


def set_site_url(url: str) -> None:
    _site["url"] = url.rstrip("/")


def download_path(meeting_id: int, ext: str, minutes: bool | None = None) -> str:
    """The console's download of a meeting's paper (for the signed-in secretary or director)."""
    paper = "" if minutes is None else f"?paper={'minutes' if minutes else 'agenda'}"
    return f"/console/council/meetings/{meeting_id}/export.{ext}{paper}"


def download_url(meeting_id: int, ext: str, minutes: bool | None = None) -> str:
    return _site["url"] + download_path(meeting_id, ext, minutes)


def docx_bytes(doc: Paper) -> bytes:
    """The Word document as bytes, for a download."""
    with tempfile.TemporaryDirectory() as folder:
        return write_docx(doc, Path(folder) / "paper.docx").read_bytes()


def write_docx(doc: Paper, path: Path) -> Path:
    """Write the paper as a Word document (A4, 宋体) at `path`."""
    import docx
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    document = docx.Document()
    section = document.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    normal = document.styles["Normal"]
    normal.font.name = "SimSun"
    normal.font.size = Pt(11)
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    document.add_heading(doc.title, level=0)
    for line in doc.meta:
        document.add_paragraph(line)
    table = document.add_table(rows=1, cols=len(doc.headers))
    table.style = "Table Grid"
    for cell, header in zip(table.rows[0].cells, doc.headers, strict=True):
        cell.text = header
    for row in doc.rows:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value
    for heading, paragraphs in doc.sections:
        if paragraphs:
            document.add_heading(heading, level=1)
            for text in paragraphs:
                document.add_paragraph(text, style="List Number")
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))
    return path


def file_name(session: Session, meeting: t.Meeting, doc: Paper, ext: str) -> str:
    community = directory.community(session, meeting.community_id)
    return f"{community.code}-meeting-{meeting.id}-{meeting.kind}-{'minutes' if doc.minutes else 'agenda'}.{ext}"
