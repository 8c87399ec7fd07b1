"""The director's dashboard (/console/figures) over real HTTP, no browser: who sees which
figures (as /figures in chat), the numbers the charts are drawn from, the overdue list, the
page's language, and the weekly trend's weeks."""

from __future__ import annotations

import datetime as dt
import json
import re

import httpx
from sqlalchemy import select

from handlers.figures import tally, trend
from handlers.registry import directory
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running
from tests.e2e.test_console import as_persona, holder_of, report

DATA = re.compile(r'<script type="application/json" id="figures-data">(.*?)</script>', re.DOTALL)


def chart_data(page: httpx.Response) -> dict[str, object]:
    match = DATA.search(page.text)
    assert match, page.text[:500]
    data: dict[str, object] = json.loads(match.group(1))
    return data


def test_week_spans_end_today_and_start_on_mondays() -> None:
    wednesday = dt.date(2026, 11, 25)
    spans = trend.week_spans(wednesday, weeks=3)
    assert spans == [(dt.date(2026, 11, 9), dt.date(2026, 11, 15)), (dt.date(2026, 11, 16), dt.date(2026, 11, 22)),
                     (dt.date(2026, 11, 23), wednesday)]


def test_the_director_sees_every_grid_the_overdue_list_and_the_map(web: Running) -> None:
    _, first = report(web, "楼道灯坏了三天了")
    _, second = report(web, "小区门口井盖松动了", resident=3)
    web.services.clock.advance(dt.timedelta(days=3))  # type: ignore[attr-defined]  # nobody acknowledged
    director = as_persona(web, "person:lin_hui")
    page = director.get("/console/figures")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-Hans">' in page.text and "响应率" in page.text
    assert "/static/vendor/echarts/echarts.min.js" in page.text and "cdn" not in page.text.lower()

    data = chart_data(page)
    with UnitOfWork(web.services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(t.Person.code == "lin_hui")).one()
        community = directory.community(uow.session, person.community_id)
        today = directory.calendar_of(community).local_date(web.services.clock.now())
        expected = tally.for_staff(uow.session, person, today.replace(day=1), today, "grid",
                                     web.services.clock.now())
    bars = data["bars"]
    assert isinstance(bars, dict)
    assert bars["labels"] == [row.name for row in expected.rows]
    responded = next(s for s in bars["series"] if s["key"] == "responded")
    # Nobody acknowledged in time: 0 % responded, per grid, as the chat's /figures says.
    assert responded["name"] == "响应率"
    assert responded["data"] == [0.0 for _ in expected.rows] and len(expected.rows) >= 1
    weekly = data["trend"]
    assert isinstance(weekly, dict) and len(weekly["labels"]) == trend.WEEKS
    assert sum(weekly["cases"]) == 2
    pins = data["map"]
    assert isinstance(pins, list) and sum(p["value"][2] for p in pins) == 2  # both open cases, on their buildings

    overdue = re.findall(r'data-testid="overdue-row" data-number="([^"]+)"', page.text)
    assert sorted(overdue) == sorted([first, second])
    live = director.get("/console/figures", params={"partial": "live"})
    assert live.text.lstrip().startswith('<div id="figures-live"') and 'hx-trigger="every 15s"' in live.text
    by_worker = chart_data(director.get("/console/figures", params={"by": "worker"}))["bars"]
    assert isinstance(by_worker, dict)
    with UnitOfWork(web.services.engine) as uow:
        holders = {uow.session.scalars(select(t.Person.name).where(t.Person.code == holder_of(web, n))).one()
                   for n in (first, second)}
    assert set(by_worker["labels"]) == holders  # nobody acknowledged: the holders are accountable
    assert director.get("/console/figures", params={"period": "2026-13"}).status_code == 422
    assert director.get("/console/figures", params={"by": "nonsense"}).status_code == 422


def test_a_worker_sees_only_their_own_rates_in_their_language(web: Running) -> None:
    _, number = report(web, "楼道灯坏了三天了")
    code = holder_of(web, number)
    with UnitOfWork(web.services.engine) as uow:
        worker = uow.session.scalars(select(t.Person).where(t.Person.code == code)).one()
        worker.language = "en"
        name = worker.name
        grids = [g.name for g in uow.session.scalars(select(t.Grid))]
        uow.commit()
    page = as_persona(web, f"person:{code}").get("/console/figures")
    assert page.status_code == 200 and '<html lang="en">' in page.text and "Responded on time" in page.text
    data = chart_data(page)
    bars = data["bars"]
    assert isinstance(bars, dict) and bars["labels"] == [name]
    assert "map" not in data  # the community's map, overdue list and notices are the director's
    assert 'data-testid="overdue"' not in page.text and 'data-testid="dead"' not in page.text
    assert not any(grid in page.text for grid in grids)
    # Their navigation offers no triage and no council board.
    assert 'href="/console/figures"' in page.text and 'href="/console/triage"' not in page.text
    assert 'href="/console/council"' not in page.text


def test_a_resident_and_a_stranger_get_no_dashboard(web: Running) -> None:
    resident, _ = report(web, "楼道灯坏了三天了")
    assert resident.get("/console/figures").status_code == 403
    assert resident.get("/console/figures", params={"partial": "live"}).status_code == 403
    stranger = web.client().get("/console/figures")
    assert stranger.status_code == 303 and stranger.headers["location"].startswith("/console/login")


def test_the_charts_script_is_ours() -> None:
    from bot.web.console.dashboard import CHARTS_JS

    script = CHARTS_JS.read_text(encoding="utf-8")
    assert "echarts.init" in script and "http" not in script
