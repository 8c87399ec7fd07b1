"""The director's dashboard (/console/figures): the four rates as bars for a period per grid,
committee or worker, their weekly trend, the overdue list, undelivered notices, and the open
cases on a schematic map of the community's buildings. Charts are Apache ECharts, served from
our own /static/vendor; the live part is polled by htmx every 15 s.

Views translate only: the figures are handlers/figures/tally.py (`for_staff`: anyone but the director
sees their own rates, as /figures in chat), the trend and the map handlers/figures/trend.py, the
overdue list handlers/cases/listing.py (the /overdue rule in SQL), the undelivered notices
handlers/watch/escalation.py (as /dead).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from bot.web.console.text import LANG_INDEX
from bot.web.console.web import TEMPLATES, Staff, Viewer, render
from bot.web.deps import Services
from handlers import periods
from handlers.cases import listing
from handlers.council import proposals
from handlers.errors import BadInput, NotAllowed
from handlers.figures import tally, trend
from handlers.registry import directory
from handlers.replies import DEFAULT
from handlers.watch import escalation
from storage import tables as t
from storage.unit_of_work import UnitOfWork

router = APIRouter()
CHARTS_JS = Path(__file__).resolve().parent.parent / "static" / "console-charts.js"
LISTED = 30
BY_CHOICES = ("grid", "committee", "worker")

# key: (zh-Hans, zh-Hant, en)
WORDS: dict[str, tuple[str, str, str]] = {
    "nav.figures": ("指标", "指標", "Figures"),
    "nav.triage": ("分派", "分派", "Triage"),
    "nav.council": ("议事会", "議事會", "Council"),
    "figures.title": ("工单指标", "工單指標", "Figures"),
    "figures.own": ("{name} 的工单指标", "{name} 的工單指標", "{name}'s figures"),
    "figures.period": ("期间（如 2026-11）", "期間（如 2026-11）", "Period (e.g. 2026-11)"),
    "figures.by": ("分组", "分組", "Grouped by"),
    "figures.show": ("查看", "查看", "Show"),
    "figures.span": ("{start} 至 {end} 派单", "{start} 至 {end} 派單", "dispatched {start} to {end}"),
    "figures.bars": ("各项比率", "各項比率", "The four rates"),
    "figures.trend": ("每周趋势", "每週趨勢", "Week by week"),
    "figures.map": ("未办结工单分布", "未辦結工單分佈", "Open cases by building"),
    "figures.map_note": ("示意图：按楼栋坐标绘制，圆点大小为未办结工单数。",
                         "示意圖：按樓棟座標繪製，圓點大小為未辦結工單數。",
                         "Schematic: buildings drawn at their coordinates; the dot's size is the open cases."),
    "figures.overdue": ("超时工单（{count} 件）", "逾時工單（{count} 件）", "Overdue cases ({count})"),
    "figures.dead": ("未送达的通知", "未送達的通知", "Undelivered notices"),
    "figures.unreachable": ("无法联系的账号", "無法聯絡的帳號", "Accounts we cannot reach"),
    "figures.table": ("明细", "明細", "The numbers"),
    "figures.more": ("全部超时工单", "全部逾時工單", "All overdue cases"),
    "rate.responded": ("响应率", "響應率", "Responded on time"),
    "rate.resolved_on_time": ("按时办结率", "按時辦結率", "Resolved on time"),
    "rate.resolved": ("解决率", "解決率", "Resolved"),
    "rate.satisfied": ("满意率", "滿意率", "Satisfied"),
    "dead.at": ("时间", "時間", "When"),
    "dead.to": ("收件人", "收件人", "To"),
    "dead.channel": ("渠道", "渠道", "Channel"),
    "dead.state": ("状态", "狀態", "State"),
    "dead.reason": ("原因", "原因", "Reason"),
    "dead.case": ("工单", "工單", "Case"),
}


def phrases(viewer: Viewer, own: dict[str, tuple[str, str, str]]) -> Callable[..., str]:
    """`t(key)` for a page: its own words first, then the console's and the chat's catalogues."""
    index = LANG_INDEX.get(viewer.lang, LANG_INDEX[DEFAULT])

    def t_(key: str, **values: object) -> str:
        if key in own:
            return own[key][index].format(**values)
        if key in WORDS:
            return WORDS[key][index].format(**values)
        return viewer.t(key, **values)

    return t_


def console_pages(request: Request, viewer: Viewer) -> list[tuple[str, str]]:
    """The navigation links to this half's pages that the viewer may open (for the base
    template): figures for every staff member, triage for the front desk and the director, the
    council board for the secretary and the director."""
    index = LANG_INDEX.get(viewer.lang, LANG_INDEX[DEFAULT])
    links = [("/console/figures", WORDS["nav.figures"][index])]
    with UnitOfWork(request.app.state.services.engine) as uow:
        person = uow.session.get(t.Person, viewer.person_id)
        if person is None:
            return links
        if person.has_role("front_desk") or person.has_role("director"):
            links.append(("/console/triage", WORDS["nav.triage"][index]))
        if proposals.is_secretary(uow.session, person):
            links.append(("/console/council", WORDS["nav.council"][index]))
    return links


# The base template lists these links on every console page.
TEMPLATES.env.globals["console_pages"] = console_pages


def staff_person(session: Session, viewer: Viewer) -> t.Person:
    try:
        return listing.staff_viewer(session.get(t.Person, viewer.person_id))
    except NotAllowed:
        raise HTTPException(status_code=403, detail=viewer.t("denied")) from None


def script_json(data: Any) -> str:
    """JSON to sit inside <script type="application/json">: no "<", ">" or "&" as such, so a
    building named "</script>" cannot end the element (the template marks it safe)."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _percent(rate: tally.Rate) -> float | None:
    return None if rate.value is None else round(rate.value * 100, 1)


def _chart_data(t_: Callable[..., str], report: tally.Figures, weekly: trend.Trend,
                pins: list[trend.Pin] | None) -> dict[str, Any]:
    names = {name: t_(f"rate.{name}") for name in tally.RATE_COLUMNS}
    labels = [row.name or t_("figures.no_grid") for row in report.rows]
    data: dict[str, Any] = {
        "bars": {"labels": labels, "series": [
            {"key": name, "name": names[name], "data": [_percent(row.rate(name)) for row in report.rows]}
            for name in tally.RATE_COLUMNS]},
        "trend": {"labels": [w.isoformat() for w in weekly.weeks], "cases": weekly.cases, "series": [
            {"key": name, "name": names[name],
             "data": [None if v is None else round(v * 100, 1) for v in weekly.series[name]]}
            for name in tally.RATE_COLUMNS]},
    }
    if pins is not None:
        data["map"] = [{"name": p.name, "code": p.code, "grid": p.grid, "value": [p.longitude, p.latitude, p.open],
                        "urgent": p.urgent} for p in pins]
    return data


def _context(session: Session, viewer: Viewer, person: t.Person, services: Services, by: str,
             period: str) -> dict[str, Any]:
    t_ = phrases(viewer, {})
    now = services.clock.now()
    community = directory.community(session, person.community_id)
    today = directory.calendar_of(community).local_date(now)
    if by not in BY_CHOICES:
        raise BadInput(f"by must be one of {', '.join(BY_CHOICES)}", reason="usage")
    start, end = periods.period(period, today)
    # The period's figures and the weekly trend from one grouped query (the live fragment
    # computes them every 15 s).
    report, weekly = trend.period_and_trend(session, person, start, end, by, today, now)
    director = person.has_role("director")
    context: dict[str, Any] = {"v": viewer, "t": t_, "lang": viewer.lang, "report": report, "by": by,
                               "period": period, "by_choices": BY_CHOICES, "rates": tally.RATE_COLUMNS,
                               "director": director, "span": t_("figures.span", start=start.isoformat(),
                                                                end=end.isoformat())}
    pins = None
    if director:
        overdue = listing.search(session, person, listing.Filters(overdue=True), now, size=LISTED)
        context |= {"overdue": overdue, "overdue_rows": listing.rows(session, overdue.cases, now),
                    "dead": escalation.dead_notices(session, person.community_id, viewer.lang, limit=LISTED),
                    "unreachable": escalation.unreachable_recipients(session, person.community_id,
                                                                     viewer.lang)[:LISTED]}
        pins = trend.open_by_building(session, person)
    context["chart_json"] = script_json(_chart_data(t_, report, weekly, pins))
    return context


@router.get("/console/figures", include_in_schema=False)
def figures_page(request: Request, viewer: Staff, services: Services, by: str = "grid", period: str = "",
                 partial: str = "") -> Response:
    with UnitOfWork(services.engine) as uow:
        person = staff_person(uow.session, viewer)
        try:
            context = _context(uow.session, viewer, person, services, by[:16], period[:40])
        except BadInput as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
    name = "console/figures_live.html" if partial == "live" else "console/figures.html"
    return render(request, name, context)


@router.get("/static/console-charts.js", include_in_schema=False)
def charts_script() -> FileResponse:
    return FileResponse(CHARTS_JS, media_type="text/javascript")
