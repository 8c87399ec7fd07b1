"""The figures a centre is judged on (接诉即办), for any period, per community, committee, grid or
worker.

Over the cases dispatched in the period (local dates of the community, `start` to `end`
inclusive), as they stand now:

- 响应率 responded on time: acknowledged by the acknowledge deadline, among the cases that were
  acknowledged or whose deadline has passed (a case still inside its first hour counts in
  neither).
- 按时办结率 resolved on time: resolved (or closed) by the resolve deadline, among the cases
  resolved or past that deadline.
- 解决率 resolved: resolved or closed, among all of them.
- 满意率 satisfied: 满意 and 基本满意 among the ratings residents gave. Every rating counts, so
  a 不满意 that reopened a case stays counted after a later 满意.
- overdue: open cases past the deadline they are working towards.

A case the resident withdrew before it was acknowledged (lifecycle.is_withdrawn) is left out of
every figure, the number of cases included.

A worker's figures are the cases they are accountable for (首问负责): the first responder, or
the holder while nobody has acknowledged. Cases without a grid (an unknown address) count under
"no grid" and "no committee".
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers import periods
from handlers.cases import corrections, lifecycle
from handlers.errors import BadInput
from handlers.registry import directory
from handlers.replies import say
from storage import tables as t
from storage.tables import OPEN_STATES, CaseState

GROUPINGS = ("community", "committee", "grid", "worker")
RESOLVED = (CaseState.RESOLVED, CaseState.CLOSED)
SATISFIED = ("satisfied", "basically_satisfied")
# The rates of a row, in the order they are shown.
RATE_COLUMNS = ("responded", "resolved_on_time", "resolved", "satisfied")


@dataclass(frozen=True)
class Rate:
    done: int
    of: int

    @property
    def value(self) -> float | None:
        return self.done / self.of if self.of else None


@dataclass
class Row:
    """One community, committee, grid or worker."""

    key: int | None
    name: str | None  # None: the cases without a grid (or committee)
    cases: int = 0
    responded: Rate = Rate(0, 0)
    resolved_on_time: Rate = Rate(0, 0)
    resolved: Rate = Rate(0, 0)
    satisfied: Rate = Rate(0, 0)
    ratings: dict[str, int] = field(default_factory=dict)
    overdue: int = 0

    def rate(self, name: str) -> Rate:
        rate: Rate = getattr(self, name)
        return rate

    def as_dict(self) -> dict[str, Any]:
        rates = {}
        for name in RATE_COLUMNS:
            r = self.rate(name)
            rates[name] = {"done": r.done, "of": r.of, "rate": None if r.value is None else round(r.value, 4)}
        return {"key": self.key, "name": self.name, "cases": self.cases, **rates,
                "ratings": self.ratings, "overdue": self.overdue}


@dataclass(frozen=True)
class Figures:
    community: str
    start: dt.date
    end: dt.date
    by: str
    rows: list[Row]
    total: Row
    own: bool = False  # one staff member's own figures
    # Cases whose reading staff corrected (handlers/cases/corrections.py), and the most frequent
    # confusions as ("facilities→property", count); the community's figures only.
    corrected: int = 0
    confusions: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"community": self.community, "from": self.start.isoformat(), "to": self.end.isoformat(),
                "by": self.by, "own": self.own, "rows": [r.as_dict() for r in self.rows],
                "total": self.total.as_dict(), "corrected": self.corrected,
                "confusions": [{"confusion": k, "cases": n} for k, n in self.confusions]}


def group_key(by: str) -> Any:
    """The SQL expression the cases are grouped by; BadInput for a grouping that is none."""
    if by == "community":
        return t.Case.community_id
    if by == "committee":
        return t.Grid.committee_id
    if by == "grid":
        return t.Case.grid_id
    if by == "worker":
        return func.coalesce(col(t.Case.first_responder_id), col(t.Case.holder_id))
    raise BadInput(f"figures by {by!r}: choose one of {', '.join(GROUPINGS)}", reason="usage")


def accountable(person: t.Person) -> Any:
    """The SQL condition: `person` is accountable for the case, as the worker grouping counts."""
    return group_key("worker") == person.id


def _names(session: Session, by: str, keys: Sequence[int | None], community: t.Community
           ) -> dict[int | None, str | None]:
    models: dict[str, type[t.Committee | t.Grid | t.Person]] = {
        "committee": t.Committee, "grid": t.Grid, "worker": t.Person}
    model = models.get(by)
    if model is None:
        return {community.id: community.name}
    ids = [k for k in keys if k is not None]
    # The two columns rather than the rows: select() of a union of models is typed as SQLModel.
    found = {row_id: name for row_id, name in session.execute(
        select(col(model.id), col(model.name)).where(col(model.id).in_(ids)))}
    return {k: found.get(k) for k in keys}


def dispatched_in(since: dt.datetime, until: dt.datetime) -> Any:
    """The SQL condition: the case was dispatched in [since, until) (UTC)."""
    return and_(col(t.Case.dispatched_at) >= since, col(t.Case.dispatched_at) < until)


def tally(session: Session, community_id: int | None, keys: Sequence[Any], now: dt.datetime,
          where: Sequence[Any]) -> dict[tuple[Any, ...], Row]:
    """The counts and ratings of the community's cases that meet `where` (the dispatch period
    among them), one Row per distinct value of the SQL expressions `keys`, keyed by the tuple of
    their values (key and name left to the caller). One statement for the counts, one for the
    ratings, whatever the grouping: the dashboard's weekly trend is one tally grouped by week."""
    labelled = [key.label(f"key{n}") for n, key in enumerate(keys)]
    c = t.Case
    # A case the resident withdrew before anyone took it up counts nowhere: it was neither
    # resolved nor late, and nobody was asked to act on it any more.
    counted = and_(col(c.community_id) == community_id, col(c.state) != CaseState.NEW,
                   not_(lifecycle.withdrawn_column()), *where)
    resolved = col(c.state).in_(list(RESOLVED))

    def count(condition: Any) -> Any:
        return func.sum(case((condition, 1), else_=0))

    stmt = (select(*labelled, func.count(),
                   count(and_(col(c.acknowledged_at).is_not(None),
                              col(c.acknowledged_at) <= c.ack_due)),
                   count(or_(col(c.acknowledged_at).is_not(None), col(c.ack_due) <= now)),
                   count(and_(resolved, col(c.resolved_at) <= c.resolve_due)),
                   count(or_(resolved, col(c.resolve_due) <= now)),
                   count(resolved),
                   count(and_(col(c.state).in_(list(OPEN_STATES)), lifecycle.next_due_column() < now)))
            .select_from(c).outerjoin(t.Grid, col(t.Grid.id) == c.grid_id).where(counted)
            .group_by(*labelled))
    width = len(keys)
    rows: dict[tuple[Any, ...], Row] = {}
    for found in session.execute(stmt):
        total, on_time_ack, due_ack, on_time_res, due_res, done, late = found[width:]
        rows[tuple(found[:width])] = Row(
            key=None, name="", cases=total, responded=Rate(on_time_ack or 0, due_ack or 0),
            resolved_on_time=Rate(on_time_res or 0, due_res or 0), resolved=Rate(done or 0, total),
            overdue=late or 0)

    ratings: dict[tuple[Any, ...], Counter[str]] = {}
    rated = (select(*labelled, col(t.CaseEvent.data)).select_from(c)
             .outerjoin(t.Grid, col(t.Grid.id) == c.grid_id)
             .join(t.CaseEvent, col(t.CaseEvent.case_id) == c.id)
             .where(counted, col(t.CaseEvent.action) == "rated"))
    for found in session.execute(rated):
        ratings.setdefault(tuple(found[:width]), Counter())[str(found[width].get("rating"))] += 1
    for k, row in rows.items():
        got = ratings.get(k, Counter())
        row.ratings = dict(sorted(got.items()))
        row.satisfied = Rate(sum(got[r] for r in SATISFIED), sum(got.values()))
    return rows


def local_bounds(community: t.Community, start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants [since, until) of the community's local dates `start` to `end`."""
    calendar = directory.calendar_of(community)
    return (calendar.to_utc(dt.datetime.combine(start, dt.time())),
            calendar.to_utc(dt.datetime.combine(end + dt.timedelta(days=1), dt.time())))


def figures(session: Session, community: t.Community, start: dt.date, end: dt.date, by: str,
            now: dt.datetime, counted: dict[Any, Row] | None = None) -> Figures:
    """The figures of `community`'s cases dispatched from `start` to `end` (local dates), one
    row per `by` group, biggest first, and the total. `counted`: the rows by group key, when
    `tally` has counted them already (the dashboard counts the period with its weekly trend)."""
    since, until = local_bounds(community, start, end)
    rows = counted if counted is not None else {k: row for (k,), row in tally(
        session, community.id, [group_key(by)], now, [dispatched_in(since, until)]).items()}
    names = _names(session, by, list(rows), community)
    for k, row in rows.items():
        row.key, row.name = k, names[k]
    ordered = sorted(rows.values(), key=lambda r: (-r.cases, r.name is None, r.name or ""))
    corrected = corrections.read(session, community.id or 0, dispatched=(since, until),
                                 case_filter=not_(lifecycle.withdrawn_column()))
    return Figures(community=community.name, start=start, end=end, by=by, rows=ordered,
                   total=sum_rows(ordered, community.name), corrected=len(corrected),
                   confusions=corrections.confusions(corrected))


def sum_rows(rows: Sequence[Row], name: str | None = None) -> Row:
    """One row that counts what `rows` count together."""
    ratings: Counter[str] = Counter()
    for row in rows:
        ratings.update(row.ratings)
    rates = {column: Rate(sum(r.rate(column).done for r in rows), sum(r.rate(column).of for r in rows))
             for column in RATE_COLUMNS}
    return Row(key=None, name=name, cases=sum(r.cases for r in rows), **rates,
               ratings=dict(sorted(ratings.items())), overdue=sum(r.overdue for r in rows))


def for_staff(session: Session, person: t.Person, start: dt.date, end: dt.date, by: str,
              now: dt.datetime, counted: dict[Any, Row] | None = None) -> Figures:
    """What a staff member may see: the director, their community by any grouping; anyone
    else, their own figures. `counted`: as for `figures`, by `by` for the director and by
    worker for anyone else (their own row is enough)."""
    community = directory.community(session, person.community_id)
    if person.has_role("director"):
        return figures(session, community, start, end, by, now, counted)
    workers = figures(session, community, start, end, "worker", now, counted)
    own = next((r for r in workers.rows if r.key == person.id), None) or Row(key=person.id, name=person.name)
    return Figures(community=community.name, start=start, end=end, by="worker", rows=[own], total=own,
                   own=True)


# Words a person may type for a grouping, in every catalogue language.
_GROUPING_WORDS = {
    "community": "community", "社区": "community", "社區": "community",
    "committee": "committee", "居委会": "committee", "居委會": "committee",
    "grid": "grid", "网格": "grid", "網格": "grid",
    "worker": "worker", "人员": "worker", "人員": "worker", "工作人员": "worker", "工作人員": "worker",
}


def read_request(text: str, today: dt.date) -> tuple[str, dt.date, dt.date]:
    """The grouping (default: grid) and period of "/figures [grouping] [period]", either order."""
    by, rest = "grid", []
    for word in text.split():
        if word.lower() in _GROUPING_WORDS:
            by = _GROUPING_WORDS[word.lower()]
        else:
            rest.append(word)
    start, end = periods.period(" ".join(rest), today)
    return by, start, end


def table(report: Figures, lang: str) -> list[list[object]]:
    """The figures as a spreadsheet: a header, one row per group, the total last. Each rate
    gives its count, its base and the percentage (empty when nothing is counted yet)."""
    header: list[object] = [say(lang, f"figures.by.{report.by}"), say(lang, "figures.col.cases")]
    for column in RATE_COLUMNS:
        label = say(lang, f"figures.col.{column}")
        header += [label, f"{label} {say(lang, 'figures.col.of')}", f"{label} %"]
    header.append(say(lang, "figures.col.overdue"))
    labelled = [(row, row.name or say(lang, "figures.no_grid")) for row in report.rows]
    if not report.own:
        labelled.append((report.total, say(lang, "figures.total")))
    rows: list[list[object]] = [header]
    for row, label in labelled:
        line: list[object] = [label, row.cases]
        for column in RATE_COLUMNS:
            rate = row.rate(column)
            line += [rate.done, rate.of, "" if rate.value is None else round(rate.value * 100, 1)]
        rows.append([*line, row.overdue])
    return rows


def _rate(lang: str, rate: Rate) -> str:
    if rate.value is None:
        return say(lang, "figures.rate_none")
    return say(lang, "figures.rate", percent=f"{rate.value * 100:.1f}", done=rate.done, of=rate.of)


def _line(lang: str, row: Row, name: str) -> str:
    return say(lang, "figures.line", name=name, cases=row.cases, responded=_rate(lang, row.responded),
               resolved_on_time=_rate(lang, row.resolved_on_time), resolved=_rate(lang, row.resolved),
               satisfied=_rate(lang, row.satisfied), overdue=row.overdue)


def render(report: Figures, lang: str) -> str:
    """The figures as lines of text, as chat and the command line show them."""
    dates = {"start": report.start.isoformat(), "end": report.end.isoformat()}
    if report.own:
        head = say(lang, "figures.head_own", name=report.total.name, **dates)
    else:
        head = say(lang, "figures.head", community=report.community,
                   by=say(lang, f"figures.by.{report.by}"), **dates)
    if not report.total.cases:
        return "\n".join([head, say(lang, "figures.none", **dates)])
    if report.own:
        # One person's own row, under their name.
        lines = [head, _line(lang, report.total, report.total.name or "")]
    else:
        lines = [head, *(_line(lang, row, row.name or say(lang, "figures.no_grid")) for row in report.rows),
                 _line(lang, report.total, say(lang, "figures.total"))]
    if not report.own:
        lines.append(_corrected_line(lang, report))
    lines.append(say(lang, "figures.legend"))
    return "\n".join(lines)


def _corrected_line(lang: str, report: Figures) -> str:
    """How many cases staff reclassified, transferred to another category or returned, and the
    confusions behind them: what the next training of the model should learn."""
    if not report.corrected:
        return say(lang, "figures.corrected_none")
    share = _rate(lang, Rate(report.corrected, report.total.cases))
    top = ", ".join(f"{k} ×{n}" for k, n in report.confusions)
    return say(lang, "figures.corrected", count=report.corrected, share=share, top=top)
