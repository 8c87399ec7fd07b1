"""The centre's case list: which cases a staff member may see, filtered, searched and paged.

    page = listing.search(session, viewer, Filters(state="open", q="ZN-2026"), now, page=1)

A staff member sees exactly the cases the chat lets them open (`lifecycle.may_see`): those they hold,
are first responder of or whose post they hold (A or B), and every case of their community for
the director and the front desk. Residents see none here. Searching a resident's name or phone
finds only cases whose contact the viewer may see (`may_see_contact`). The list is ordered by the
deadline each case is working towards, most pressing first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers import periods
from handlers.cases import lifecycle
from handlers.errors import BadInput, NotAllowed
from handlers.registry import directory
from storage import tables as t
from storage.tables import OPEN_STATES, CaseState

PAGE_SIZE = 25
# An export is the filtered list, not the database: a sane ceiling keeps one request bounded.
EXPORT_MAX = 10_000
MAX_QUERY = 100
STATES = tuple(s.value for s in CaseState if s != CaseState.NEW)
KINDS = tuple(k.value for k in t.CaseKind)
# Roles that see and handle every case of their community (as `lifecycle._may_handle`).
COMMUNITY_WIDE = ("director", "front_desk")


@dataclass(frozen=True)
class Filters:
    """What the list is narrowed to; every field empty means all the viewer may see."""

    state: str = ""  # a case state, or "open" for every open state
    kind: str = ""
    category: str = ""
    urgent: bool | None = None
    overdue: bool = False
    grid: str = ""  # grid code
    committee: str = ""  # committee code
    post: str = ""  # post code
    holder: str = ""  # person code
    period: str = ""  # created in: 2026-11, 2026-11-01..2026-11-15, 2026
    q: str = ""  # case number, text, or (where allowed) the resident's name or phone

    def checked(self) -> Filters:
        """The filters with their values checked; BadInput names a value that means nothing."""
        if self.state and self.state != "open" and self.state not in STATES:
            raise BadInput(f"unknown state {self.state!r}", reason="usage")
        if self.kind and self.kind not in KINDS:
            raise BadInput(f"unknown kind {self.kind!r}", reason="usage")
        return replace(self, q=self.q.strip()[:MAX_QUERY])


@dataclass(frozen=True)
class Page:
    cases: list[t.Case]
    total: int
    page: int
    pages: int


def staff_viewer(person: t.Person | None) -> t.Person:
    """The console is for active staff: a resident (no person) is not allowed in."""
    if person is None or not person.active:
        raise NotAllowed("the console is for staff")
    return person


def _sees_whole_community(person: t.Person) -> bool:
    return any(person.has_role(role) for role in COMMUNITY_WIDE)


def _own_posts(person: t.Person) -> Any:
    return select(col(t.Post.id)).where(
        or_(col(t.Post.a_holder_id) == person.id, col(t.Post.b_holder_id) == person.id))


def visible(person: t.Person) -> ColumnElement[bool]:
    """The SQL condition for the cases `person` may see: `lifecycle.may_see`, for a whole table."""
    scope = col(t.Case.community_id) == person.community_id
    if _sees_whole_community(person):
        return scope
    return scope & or_(col(t.Case.holder_id) == person.id, col(t.Case.first_responder_id) == person.id,
                       col(t.Case.post_id).in_(_own_posts(person)))


def may_see_contact(session: Session, case: t.Case, person: t.Person) -> bool:
    """Whether the resident's phone and address are shown to `person` on this case: to those who
    handle it, as the chat's case card shows them (`case_card(with_contact=True)`)."""
    return lifecycle.may_see(session, case, person=person)


def _local_bounds(session: Session, person: t.Person, text: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    community = directory.community(session, person.community_id)
    zone = ZoneInfo(community.timezone)
    first, last = periods.period(text, now.astimezone(zone).date())
    start = dt.datetime.combine(first, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return start, end


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def query(session: Session, person: t.Person, filters: Filters, now: dt.datetime) -> Select[Any]:
    """The viewer's cases under `filters`, most pressing deadline first (not yet paged)."""
    f = filters.checked()
    stmt = select(t.Case).where(visible(person), col(t.Case.state) != CaseState.NEW)
    if f.state == "open":
        stmt = stmt.where(col(t.Case.state).in_(OPEN_STATES))
    elif f.state:
        stmt = stmt.where(col(t.Case.state) == f.state)
    if f.kind:
        stmt = stmt.where(col(t.Case.kind) == f.kind)
    if f.category:
        stmt = stmt.where(col(t.Case.category) == f.category)
    if f.urgent is not None:
        stmt = stmt.where(col(t.Case.urgent).is_(f.urgent))
    if f.overdue:
        stmt = stmt.where(col(t.Case.state).in_(OPEN_STATES), lifecycle.next_due_column() < now)
    if f.grid:
        stmt = stmt.where(col(t.Case.grid_id).in_(select(col(t.Grid.id)).where(col(t.Grid.code) == f.grid)))
    if f.committee:
        stmt = stmt.where(col(t.Case.grid_id).in_(
            select(col(t.Grid.id)).join(t.Committee, col(t.Committee.id) == col(t.Grid.committee_id))
            .where(col(t.Committee.code) == f.committee)))
    if f.post:
        stmt = stmt.where(col(t.Case.post_id).in_(
            select(col(t.Post.id)).where(col(t.Post.code) == f.post,
                                         col(t.Post.community_id) == person.community_id)))
    if f.holder:
        stmt = stmt.where(col(t.Case.holder_id).in_(select(col(t.Person.id)).where(col(t.Person.code) == f.holder)))
    if f.period:
        start, end = _local_bounds(session, person, f.period, now)
        stmt = stmt.where(col(t.Case.created_at) >= start, col(t.Case.created_at) < end)
    if f.q:
        pattern = _like(f.q)
        found = [col(t.Case.number).ilike(pattern, escape="\\"), col(t.Case.text).ilike(pattern, escape="\\")]
        # Everyone here may see the contact of every case they see (may_see_contact); the
        # resident columns are searched under the same condition as the cases themselves.
        found.append(col(t.Case.resident_id).in_(
            select(col(t.Resident.id)).where(or_(col(t.Resident.name).ilike(pattern, escape="\\"),
                                                 col(t.Resident.phone).ilike(pattern, escape="\\")))))
        stmt = stmt.where(or_(*found))
    return stmt.order_by(lifecycle.next_due_column(), col(t.Case.id))


def search(session: Session, person: t.Person, filters: Filters, now: dt.datetime, page: int = 1,
           size: int = PAGE_SIZE) -> Page:
    """One page of the viewer's cases under `filters`."""
    stmt = query(session, person, filters, now)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(1, -(-total // size))
    page = min(max(page, 1), pages)
    rows = list(session.scalars(stmt.offset((page - 1) * size).limit(size)))
    return Page(cases=rows, total=total, page=page, pages=pages)


def export(session: Session, person: t.Person, filters: Filters, now: dt.datetime) -> list[t.Case]:
    """Every case of the filtered list (up to EXPORT_MAX), in the list's order."""
    return list(session.scalars(query(session, person, filters, now).limit(EXPORT_MAX)))


@dataclass(frozen=True)
class Choices:
    """What the filters offer a viewer: the codes and names of their community."""

    categories: list[tuple[str, str]]
    grids: list[tuple[str, str]]
    committees: list[tuple[str, str]]
    posts: list[tuple[str, str]]
    holders: list[tuple[str, str]]


def choices(session: Session, person: t.Person) -> Choices:
    cid = person.community_id
    cats = session.scalars(select(t.Category).where(col(t.Category.community_id) == cid)
                           .order_by(col(t.Category.code)))
    committees = list(session.scalars(select(t.Committee).where(col(t.Committee.community_id) == cid,
                                                                col(t.Committee.active).is_(True))
                                      .order_by(col(t.Committee.code))))
    grids = session.scalars(select(t.Grid).where(col(t.Grid.committee_id).in_([c.id for c in committees]),
                                                 col(t.Grid.active).is_(True)).order_by(col(t.Grid.code)))
    people = session.scalars(select(t.Person).where(col(t.Person.community_id) == cid,
                                                    col(t.Person.active).is_(True)).order_by(col(t.Person.code)))
    return Choices(
        categories=[(c.code, c.name) for c in cats],
        grids=[(g.code, g.name) for g in grids],
        committees=[(c.code, c.name) for c in committees],
        posts=[(p.code, p.name) for p in directory.posts_of(session, cid)],
        holders=[(p.code, p.name) for p in people],
    )


@dataclass(frozen=True)
class Row:
    """A case as the list shows it, names looked up."""

    case: t.Case
    category: str
    grid: str
    post: str
    holder: str
    next_due: dt.datetime
    overdue: bool


def rows(session: Session, found: Sequence[t.Case], now: dt.datetime) -> list[Row]:
    """The list's rows for `found`, with names read once per table rather than per case."""
    cats = {(c.community_id, c.code): c.name for c in session.scalars(select(t.Category))}
    grid_ids = {c.grid_id for c in found if c.grid_id}
    grids = {g.id: g.name for g in session.scalars(select(t.Grid).where(col(t.Grid.id).in_(grid_ids)))}
    post_ids = {c.post_id for c in found if c.post_id}
    posts = {p.id: p.name for p in session.scalars(select(t.Post).where(col(t.Post.id).in_(post_ids)))}
    person_ids = {c.holder_id for c in found if c.holder_id}
    people = {p.id: p.name for p in session.scalars(select(t.Person).where(col(t.Person.id).in_(person_ids)))}
    return [Row(case=c, category=cats.get((c.community_id, c.category), c.category),
                grid=grids.get(c.grid_id, "") if c.grid_id else "",
                post=posts.get(c.post_id, "") if c.post_id else "",
                holder=people.get(c.holder_id, "") if c.holder_id else "",
                next_due=lifecycle.next_due(c),
                overdue=c.state in OPEN_STATES and lifecycle.due_passed(c, now))
            for c in found]
