"""What the director's dashboard adds to handlers/figures/tally.py: the four rates week by week, and
where the open cases are (per building, for a schematic map drawn from the buildings'
coordinates).

    spans = trend.week_spans(today, weeks=8)          # pure: Monday..Sunday, oldest first
    weekly = trend.weekly(session, person, today, now)  # every week in one grouped query
    report, weekly = trend.period_and_trend(    # a period's figures and the trend, one query
        session, person, start, end, "grid", today, now)
    pins = trend.open_by_building(session, person)     # director: buildings and open counts

The weeks are counted exactly as `tally.for_staff` counts a period (`tally.tally`), in one
query grouped by the week of dispatch rather than one query per week: the director sees the
community, anyone else their own cases (those they are accountable for), as /figures in chat.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.errors import NotAllowed
from handlers.figures import tally
from handlers.registry import directory
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


def trend_of(weeks: Sequence[dt.date], totals: Sequence[tally.Row], own: bool) -> Trend:
    """The trend of each week's total row (oldest first), rate by rate."""
    series: dict[str, list[float | None]] = {name: [] for name in tally.RATE_COLUMNS}
    for total in totals:
        for name in tally.RATE_COLUMNS:
            value = total.rate(name).value
            series[name].append(None if value is None else round(value, 4))
    return Trend(weeks=list(weeks), cases=[r.cases for r in totals], series=series, own=own)


def week_of_dispatch(bounds: Sequence[dt.datetime]) -> Any:
    """The SQL expression for the index of the week a case was dispatched in: 0 for
    [bounds[0], bounds[1]), 1 for the next…, NULL outside. The bounds are computed in Python from
    the community's local dates, so the database needs no time zone arithmetic of its own."""
    dispatched = col(t.Case.dispatched_at)
    weeks = [(dispatched < upper, n) for n, upper in enumerate(bounds[1:])]
    return case((dispatched < bounds[0], None), *weeks, else_=None)


def _bounds(community: t.Community, spans: Sequence[tuple[dt.date, dt.date]]) -> list[dt.datetime]:
    """Each span's first local midnight in UTC, and the one after the last span."""
    return [tally.local_bounds(community, start, start)[0] for start, _ in spans] + \
        [tally.local_bounds(community, spans[-1][1], spans[-1][1])[1]]


def weekly(session: Session, person: t.Person, today: dt.date, now: dt.datetime, weeks: int = WEEKS) -> Trend:
    """The person's weekly trend: the director's community, anyone else's own cases."""
    spans = week_spans(today, weeks)
    totals = weekly_totals(session, person, spans, now)
    return trend_of([start for start, _ in spans], totals, own=not person.has_role("director"))


def weekly_totals(session: Session, person: t.Person, spans: Sequence[tuple[dt.date, dt.date]],
                  now: dt.datetime) -> list[tally.Row]:
    """Each span's total row, as `tally.for_staff` reads the span on its own (the director's
    community, anyone else's own cases), all in one grouped query. The spans are consecutive
    (`week_spans`)."""
    community = directory.community(session, person.community_id)
    bounds = _bounds(community, spans)
    where = [tally.dispatched_in(bounds[0], bounds[-1])]
    if not person.has_role("director"):
        where.append(tally.accountable(person))
    rows = tally.tally(session, community.id, [week_of_dispatch(bounds)], now, where)
    return [rows.get((n,), tally.Row(key=None, name=None)) for n in range(len(spans))]


def period_and_trend(session: Session, person: t.Person, start: dt.date, end: dt.date, by: str,
                     today: dt.date, now: dt.datetime, weeks: int = WEEKS) -> tuple[tally.Figures, Trend]:
    """What the dashboard draws: `tally.for_staff` of `start`..`end` by `by`, and the weekly
    trend up to `today` (`weekly`), from one tally. Every case of the period or of the weeks is
    counted once, grouped by its group, its week and whether it falls in the period; the
    period's rows and the weeks' totals are sums of those."""
    community = directory.community(session, person.community_id)
    director = person.has_role("director")
    spans = week_spans(today, weeks)
    bounds = _bounds(community, spans)
    in_period = tally.dispatched_in(*tally.local_bounds(community, start, end))
    where = [or_(in_period, tally.dispatched_in(bounds[0], bounds[-1]))]
    if not director:
        where.append(tally.accountable(person))  # their own row is all for_staff shows them
    keys = [tally.group_key(by if director else "worker"), week_of_dispatch(bounds), case((in_period, 1), else_=0)]
    groups: dict[Any, list[tally.Row]] = {}
    weekly_rows: dict[int, list[tally.Row]] = {}
    for (group, week, counted_in_period), row in tally.tally(session, community.id, keys, now, where).items():
        if counted_in_period:
            groups.setdefault(group, []).append(row)
        if week is not None:
            weekly_rows.setdefault(week, []).append(row)
    report = tally.for_staff(session, person, start, end, by, now,
                               counted={group: tally.sum_rows(rows) for group, rows in groups.items()})
    totals = [tally.sum_rows(weekly_rows.get(n, [])) for n in range(len(spans))]
    return report, trend_of([start for start, _ in spans], totals, own=not director)


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
