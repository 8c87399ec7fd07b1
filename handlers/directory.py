"""Read-side lookups over the loaded registry: people, posts, buildings, routing tables."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.deadlines import WorkingCalendar
from handlers.errors import NotFound
from handlers.routing import PostSeat, RoutingTable
from storage import tables as t

_tables: dict[tuple[int, str], RoutingTable] = {}
_tables_lock = threading.Lock()


def calendar_of(community: t.Community) -> WorkingCalendar:
    return WorkingCalendar(timezone=community.timezone, start=community.work_start, end=community.work_end)


def routing_table(session: Session, community: t.Community) -> RoutingTable:
    """The community's routing table, cached until the registry changes (its hash)."""
    key = (community.id or 0, community.registry_hash)
    with _tables_lock:
        cached = _tables.get(key)
    if cached is not None:
        return cached
    people = {p.id: p.code for p in session.scalars(
        select(t.Person).where(col(t.Person.community_id) == community.id))}
    grids = {g.id: g.code for g in session.scalars(select(t.Grid))}
    posts = {
        p.code: PostSeat(
            code=p.code,
            kind=p.kind,
            a=people[p.a_holder_id],
            b=people.get(p.b_holder_id) if p.b_holder_id else None,
            grid=grids.get(p.grid_id) if p.grid_id else None,
        )
        for p in session.scalars(
            select(t.Post)
            .where(col(t.Post.community_id) == community.id, col(t.Post.active).is_(True))
        )
    }
    leaves: dict[str, list[tuple]] = {}
    for leave in session.scalars(select(t.Leave).where(col(t.Leave.person_id).in_(list(people)))):
        leaves.setdefault(people[leave.person_id], []).append((leave.start, leave.end))
    duty = {
        d.day: people[d.person_id]
        for d in session.scalars(
            select(t.DutyDay).where(col(t.DutyDay.community_id) == community.id))
    }
    owners = {
        c.code: c.post_code
        for c in session.scalars(
            select(t.Category).where(col(t.Category.community_id) == community.id))
    }
    table = RoutingTable(
        posts=posts,
        category_owners=owners,
        leaves={k: tuple(v) for k, v in leaves.items()},
        duty=duty,
    )
    with _tables_lock:
        _tables[key] = table
    return table


def community(session: Session, community_id: int) -> t.Community:
    row = session.get(t.Community, community_id)
    if row is None:
        raise NotFound(what="community")
    return row


def communities(session: Session, code: str | None = None) -> list[t.Community]:
    """Every community by code, or the one with `code` (any case); [] when there is none."""
    stmt = select(t.Community).order_by(col(t.Community.code))
    if code:
        stmt = stmt.where(col(t.Community.code) == code.upper())
    return list(session.scalars(stmt))


def person_by_code(session: Session, code: str) -> t.Person:
    row = session.scalars(select(t.Person).where(col(t.Person.code) == code)).first()
    if row is None:
        raise NotFound(what=code)
    return row


def post_by_code(session: Session, community_id: int, code: str) -> t.Post:
    """An active post of the community; post codes are per community (each has its `front_desk`)."""
    row = session.scalars(
        select(t.Post).where(col(t.Post.community_id) == community_id, col(t.Post.code) == code,
                             col(t.Post.active).is_(True))).first()
    if row is None:
        raise NotFound(what=code)
    return row


def building_by_code(session: Session, code: str) -> t.Building:
    row = session.scalars(
        select(t.Building).where(col(t.Building.code) == code.strip().upper(),
                                 col(t.Building.active).is_(True))
    ).first()
    if row is None:
        row = session.scalars(
            select(t.Building).where(col(t.Building.code) == code.strip(),
                                     col(t.Building.active).is_(True))
        ).first()
    if row is None:
        raise NotFound(what=code)
    return row


def category(session: Session, community_id: int, code: str) -> t.Category | None:
    return session.scalars(
        select(t.Category)
        .where(col(t.Category.community_id) == community_id, col(t.Category.code) == code)
    ).first()


def posts_of(session: Session, community_id: int) -> list[t.Post]:
    return list(
        session.scalars(
            select(t.Post)
            .where(col(t.Post.community_id) == community_id, col(t.Post.active).is_(True))
            .order_by(col(t.Post.code))
        )
    )


@dataclass(frozen=True)
class GridSign:
    """The 网格指示牌 of a building: its grid and who serves it."""

    building: str
    building_code: str
    committee: str
    grid: str
    grid_code: str
    worker: str
    worker_phone: str
    post: str
    backup: str | None
    backup_phone: str | None


def grid_sign(session: Session, building: t.Building) -> GridSign:
    grid = session.get(t.Grid, building.grid_id)
    assert grid is not None
    committee = session.get(t.Committee, grid.committee_id)
    post = session.scalars(
        select(t.Post).where(col(t.Post.grid_id) == grid.id, col(t.Post.kind) == "grid",
                             col(t.Post.active).is_(True))
    ).first()
    if post is None:
        raise NotFound(what=grid.code)
    a = session.get(t.Person, post.a_holder_id)
    b = session.get(t.Person, post.b_holder_id) if post.b_holder_id else None
    assert a is not None
    return GridSign(
        building=building.name,
        building_code=building.code,
        committee=committee.name if committee else "",
        grid=grid.name,
        grid_code=grid.code,
        worker=a.name,
        worker_phone=a.phone,
        post=post.name,
        backup=b.name if b else None,
        backup_phone=b.phone if b else None,
    )
