"""What the director's dashboard adds to handlers/figures.py: the four rates week by week, and
where the open cases are (per building, for a schematic map drawn from the buildings'
coordinates).

    spans = figures_trend.week_spans(today, weeks=8)          # pure: Monday..Sunday, oldest first
    trend = figures_trend.weekly(session, person, today, now)  # one figures.for_staff per week
    pins = figures_trend.open_by_building(session, person)     # director: buildings and open counts

Each week is read through `figures.for_staff`, so a staff member who is not the director sees
their own rates only, exactly as /figures shows them in chat.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers import figures
from handlers.errors import NotAllowed
from storage import tables as t
from storage.tables import OPEN_STATES

WEEKS = 8


def week_spans(today: dt.date, weeks: int = WEEKS) -> list[tuple[dt.date, dt.date]]:
    """The last `weeks` calendar weeks (Monday to Sunday) up to and including today's, oldest
    first; the current week ends today, as the period "this month to date" does."""
    monday = today - dt.timedelta(days=today.weekday())
    spans = []
    for back in range(weeks - 1, -1, -1):
        start = monday - dt.timedelta(weeks=back)
        spans.append((start, min(start + dt.timedelta(days=6), today)))
    return spans


@dataclass(frozen=True)
class Trend:
    """The four rates per week: `weeks` are the Mondays, each series one value per week (a
    fraction, None where nothing was counted yet), `cases` the cases of each week."""

    weeks: list[dt.date]
    cases: list[int]
    series: dict[str, list[float | None]]
    own: bool


def trend_of(reports: Sequence[figures.Figures]) -> Trend:
    """The trend of weekly reports (oldest first): each week's total row, rate by rate."""
    series: dict[str, list[float | None]] = {name: [] for name in figures.RATE_COLUMNS}
    for report in reports:
        for name in figures.RATE_COLUMNS:
            value = report.total.rate(name).value
            series[name].append(None if value is None else round(value, 4))
    return Trend(weeks=[r.start for r in reports], cases=[r.total.cases for r in reports], series=series,
                 own=any(r.own for r in reports))


def weekly(session: Session, person: t.Person, today: dt.date, now: dt.datetime, weeks: int = WEEKS) -> Trend:
    """The person's weekly trend: the director's community, anyone else's own cases."""
    reports = [figures.for_staff(session, person, start, end, "community", now)
               for start, end in week_spans(today, weeks)]
    return trend_of(reports)


@dataclass(frozen=True)
class Pin:
    """A building on the map with its open cases (and how many of them are urgent)."""

    code: str
    name: str
    grid: str
    latitude: float
    longitude: float
    open: int
    urgent: int


def open_by_building(session: Session, person: t.Person) -> list[Pin]:
    """Every located building of the director's community with its open cases, for the map.
    The whole community's cases are the director's to see (as /overdue), nobody else's."""
    if not person.has_role("director"):
        raise NotAllowed("the director's map")
    c = t.Case
    counts = {building_id: (total, urgent or 0) for building_id, total, urgent in session.execute(
        select(col(c.building_id), func.count(), func.sum(case((col(c.urgent).is_(True), 1), else_=0)))
        .where(col(c.community_id) == person.community_id, col(c.state).in_(OPEN_STATES),
               col(c.building_id).is_not(None))
        .group_by(col(c.building_id)))}
    rows = session.execute(
        select(t.Building, t.Grid).join(t.Grid, col(t.Grid.id) == col(t.Building.grid_id))
        .join(t.Committee, col(t.Committee.id) == col(t.Grid.committee_id))
        .where(col(t.Committee.community_id) == person.community_id, col(t.Building.active).is_(True),
               col(t.Building.latitude).is_not(None), col(t.Building.longitude).is_not(None))
        .order_by(col(t.Building.code)))
    pins = []
    for building, grid in rows:
        total, urgent = counts.get(building.id, (0, 0))
        assert building.latitude is not None and building.longitude is not None
        pins.append(Pin(code=building.code, name=building.name, grid=grid.name, latitude=building.latitude,
                        longitude=building.longitude, open=total, urgent=int(urgent)))
    return pins
