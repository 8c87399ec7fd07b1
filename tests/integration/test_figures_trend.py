"""The dashboard's weekly trend, read in one grouped query, equals the figures of each week read
on its own (`tally.for_staff`, as /figures in chat), on SQLite and PostgreSQL.

The cases span nine weeks across the October/November boundary, with cases on both sides of
a Monday's local midnight (Sunday 16:00 UTC in Beijing), every state, withdrawn ones, ratings,
and cases of several holders, so the director's trend and a grid worker's own both have
something to get wrong.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import Services
from handlers.figures import tally, trend
from storage import tables as t
from storage.unit_of_work import UnitOfWork

BEIJING = dt.timezone(dt.timedelta(hours=8))
TODAY = dt.date(2026, 11, 25)  # a Wednesday: the current week is cut short at today
NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=BEIJING).astimezone(dt.UTC)
STATES = ("new", "assigned", "acknowledged", "transferred", "replied", "reopened", "resolved", "closed")
RATINGS = ("satisfied", "basically_satisfied", "dissatisfied")


def fill(services: Services, count: int = 400) -> None:
    """`count` cases dispatched from 2026-09-21 to today, and a few exactly at a week's edge."""
    rng = random.Random(11)
    with UnitOfWork(services.engine) as uow:
        session = uow.session
        community = session.scalars(select(t.Community)).one()
        resident = session.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        assert resident is not None and community.id is not None
        posts = list(session.scalars(select(t.Post).where(t.Post.kind == "grid")))
        first = dt.datetime(2026, 9, 21, tzinfo=BEIJING).astimezone(dt.UTC)
        span = (NOW - first).total_seconds()
        # Monday 2026-11-02 00:00 in Beijing, a second before and at it; and the first minute
        # of November (a Sunday) in Beijing, which is still October in UTC.
        edges = [dt.datetime(2026, 11, 2, tzinfo=BEIJING) - dt.timedelta(seconds=1),
                 dt.datetime(2026, 11, 2, tzinfo=BEIJING), dt.datetime(2026, 11, 1, 0, 1, tzinfo=BEIJING)]
        moments = [e.astimezone(dt.UTC) for e in edges] + [
            first + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(count)]
        made: list[tuple[t.Case, list[str]]] = []
        for n, dispatched in enumerate(moments):
            post = rng.choice(posts)
            state = rng.choice(STATES)
            ack_due = dispatched + dt.timedelta(hours=rng.choice((1, 4, 30)))
            resolve_due = dispatched + dt.timedelta(days=rng.choice((1, 5, 20)))
            acknowledged = None if state in ("new", "assigned") or rng.random() < 0.1 else \
                dispatched + dt.timedelta(hours=rng.uniform(0, 8))
            resolved = dispatched + dt.timedelta(days=rng.uniform(0, 10)) if state in ("resolved", "closed") else None
            if state == "closed" and rng.random() < 0.3:
                resolved = None  # withdrawn by the resident: counted nowhere
            responder = post.a_holder_id if acknowledged and rng.random() < 0.8 else None
            case = t.Case(
                number=f"ZN-TREND-{n:05d}", community_id=community.id, kind="service_request",
                category="facilities", text="楼道灯坏了", resident_id=resident.id, grid_id=post.grid_id,
                state=state, post_id=post.id, holder_id=rng.choice((post.a_holder_id, post.b_holder_id)),
                first_responder_id=responder, created_at=dispatched, dispatched_at=dispatched,
                ack_due=ack_due, reply_due=ack_due + dt.timedelta(days=1), resolve_due=resolve_due,
                acknowledged_at=acknowledged, resolved_at=resolved)
            made.append((case, [rng.choice(RATINGS) for _ in range(rng.choice((0, 0, 1, 2)))]))
        session.add_all(case for case, _ in made)
        session.flush()
        session.add_all(t.CaseEvent(case_id=case.id, seq=seq, at=case.dispatched_at, action="rated",
                                    data={"rating": rating})
                        for case, ratings in made for seq, rating in enumerate(ratings, 1))
        uow.commit()


def one_week_at_a_time(session: Session, person: t.Person) -> list[tally.Figures]:
    """The weeks as /figures reads them: `tally.for_staff` once per week."""
    return [tally.for_staff(session, person, start, end, "community", NOW)
            for start, end in trend.week_spans(TODAY)]


def counts(row: tally.Row) -> dict[str, object]:
    """A row's numbers, without the name it is shown under."""
    return row.as_dict() | {"key": None, "name": None}


def test_the_one_query_trend_equals_each_week_read_on_its_own(services: Services) -> None:
    fill(services)
    with UnitOfWork(services.engine) as uow:
        people = {p.code: p for p in uow.session.scalars(select(t.Person))}
        for code in ("lin_hui", "zhang_li", "wang_fang"):  # the director, two grid workers
            person = people[code]
            weeks = one_week_at_a_time(uow.session, person)
            totals = trend.weekly_totals(uow.session, person, trend.week_spans(TODAY), NOW)
            assert [counts(r) for r in totals] == [counts(w.total) for w in weeks], code
            weekly = trend.weekly(uow.session, person, TODAY, NOW)
            assert weekly == trend.trend_of([w.start for w in weeks], [w.total for w in weeks],
                                                   own=code != "lin_hui")
            assert weekly.weeks[0] == dt.date(2026, 10, 5) and weekly.weeks[-1] == dt.date(2026, 11, 23)
            # Most weeks count something, ratings too: the comparison means something.
            assert sum(1 for n in weekly.cases if n) >= 6, (code, weekly.cases)
            assert sum(sum(r.ratings.values()) for r in totals) > 0, code
        # The director's weeks hold every counted case dispatched from the first Monday on.
        director = trend.weekly(uow.session, people["lin_hui"], TODAY, NOW)
        whole = tally.for_staff(uow.session, people["lin_hui"], dt.date(2026, 10, 5), TODAY, "community", NOW)
        assert sum(director.cases) == whole.total.cases


def test_the_dashboard_counts_a_period_and_the_trend_in_one_query_as_they_are_read_apart(
        services: Services) -> None:
    """The period's figures and the trend from one tally equal `tally.for_staff` of the period
    and the trend read week by week, for periods inside, overlapping, around and before the
    trend's weeks."""
    fill(services)
    periods = [(dt.date(2026, 11, 1), TODAY), (dt.date(2026, 9, 1), dt.date(2026, 10, 20)),
               (dt.date(2026, 1, 1), dt.date(2026, 12, 31)), (dt.date(2026, 9, 21), dt.date(2026, 9, 30)),
               (dt.date(2026, 11, 2), dt.date(2026, 11, 2))]
    with UnitOfWork(services.engine) as uow:
        session = uow.session
        people = {p.code: p for p in session.scalars(select(t.Person))}
        asked = [(people["lin_hui"], by) for by in tally.GROUPINGS] + [(people["zhang_li"], "grid")]
        for person, by in asked:
            weeks = one_week_at_a_time(session, person)
            expected_trend = trend.trend_of([w.start for w in weeks], [w.total for w in weeks],
                                                    own=person.code != "lin_hui")
            for start, end in periods:
                report, weekly = trend.period_and_trend(session, person, start, end, by, TODAY, NOW)
                assert report == tally.for_staff(session, person, start, end, by, NOW), (person.code, by, start)
                assert weekly == expected_trend, (person.code, by, start)
                assert report.total.cases > 0 or start.month == 9, (person.code, by, start)
