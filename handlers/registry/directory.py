"""Read-side lookups over the loaded registry: people, posts, buildings, routing tables.

Everything here is answered from the process's copy of the registry (storage/registry_cache.py),
without SQL once the unit of work has read the registry's version. A row it returns belongs to
the caller's session, as if read by a query: a copy made from the cached values, or the
session's own row when it has one already.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from handlers.deadlines import WorkingCalendar
from handlers.errors import NotFound
from handlers.routing import PostSeat, RoutingTable
from storage import registry_cache
from storage import tables as t
from storage.registry_cache import Row, Snapshot
from storage.unit_of_work import transaction_memo

M = TypeVar("M")


def _row(session: Session, table: type[M], values: Row) -> M:
    """The session's row for cached `values`: already in the session, or made from them without
    SQL, as a query would have loaded it. Kept for the rest of the transaction: a message asks
    for the same few rows again and again, and a session holds an unchanged row only as long as
    someone refers to it."""
    rows: dict[tuple[type, int], Any] = transaction_memo(session).setdefault(_ROWS, {})
    key = (table, values["id"])
    row: M | None = rows.get(key)
    if row is None:
        row = rows[key] = t.loaded(session, table, values)
    return row


_ROWS = "registry:rows"


def _get(session: Session, table: type[M], row_id: int | None) -> M | None:
    values = registry_cache.snapshot(session).of(table).get(row_id or 0)
    return _row(session, table, values) if values is not None else None


def _index(snap: Snapshot, name: str) -> dict[Any, Any]:
    """Lookups by code, built once per snapshot."""
    def build(s: Snapshot) -> dict[Any, Any]:
        if name == "person":
            return {r["code"]: r for r in s.of(t.Person).values()}
        if name == "post":
            return {(r["community_id"], r["code"]): r for r in s.of(t.Post).values() if r["active"]}
        if name == "building":
            return {r["code"]: r for r in s.of(t.Building).values() if r["active"]}
        if name == "category":
            return {(r["community_id"], r["code"]): r for r in s.of(t.Category).values()}
        raise KeyError(name)
    return snap.derived(f"index:{name}", build)


def calendar_of(community: t.Community) -> WorkingCalendar:
    return WorkingCalendar(timezone=community.timezone, start=community.work_start, end=community.work_end)


def routing_table(session: Session, community: t.Community) -> RoutingTable:
    """The community's routing table, built once per version of the registry."""
    community_id = community.id or 0
    return registry_cache.snapshot(session).derived(
        f"routing:{community_id}", lambda snap: _routing_table(snap, community_id))


def _routing_table(snap: Snapshot, community_id: int) -> RoutingTable:
    people = {p["id"]: p["code"] for p in snap.of(t.Person).values() if p["community_id"] == community_id}
    grids = {g["id"]: g["code"] for g in snap.of(t.Grid).values()}
    posts = {
        p["code"]: PostSeat(
            code=p["code"],
            kind=p["kind"],
            a=people[p["a_holder_id"]],
            b=people.get(p["b_holder_id"]) if p["b_holder_id"] else None,
            grid=grids.get(p["grid_id"]) if p["grid_id"] else None,
        )
        for p in sorted(snap.of(t.Post).values(), key=lambda p: p["id"])
        if p["community_id"] == community_id and p["active"]
    }
    leaves: dict[str, list[tuple]] = {}
    for leave in sorted(snap.of(t.Leave).values(), key=lambda lv: lv["id"]):
        if leave["person_id"] in people:
            leaves.setdefault(people[leave["person_id"]], []).append((leave["start"], leave["end"]))
    duty = {d["day"]: people[d["person_id"]] for d in snap.of(t.DutyDay).values()
            if d["community_id"] == community_id}
    owners = {c["code"]: c["post_code"] for c in snap.of(t.Category).values()
              if c["community_id"] == community_id}
    return RoutingTable(
        posts=posts,
        category_owners=owners,
        leaves={k: tuple(v) for k, v in leaves.items()},
        duty=duty,
    )


def community(session: Session, community_id: int) -> t.Community:
    row = _get(session, t.Community, community_id)
    if row is None:
        raise NotFound(what="community")
    return row


def communities(session: Session, code: str | None = None) -> list[t.Community]:
    """Every community by code, or the one with `code` (any case); [] when there is none."""
    found = sorted(registry_cache.snapshot(session).of(t.Community).values(), key=lambda c: c["code"])
    return [_row(session, t.Community, c) for c in found if not code or c["code"] == code.upper()]


def person(session: Session, person_id: int | None) -> t.Person | None:
    """A person by id (active or not), None for none."""
    return _get(session, t.Person, person_id)


def person_by_code(session: Session, code: str) -> t.Person:
    values = _index(registry_cache.snapshot(session), "person").get(code)
    if values is None:
        raise NotFound(what=code)
    return _row(session, t.Person, values)


def post_by_code(session: Session, community_id: int, code: str) -> t.Post:
    """An active post of the community; post codes are per community (each has its `front_desk`)."""
    values = _index(registry_cache.snapshot(session), "post").get((community_id, code))
    if values is None:
        raise NotFound(what=code)
    return _row(session, t.Post, values)


def building(session: Session, building_id: int | None) -> t.Building | None:
    """A building by id (active or not), None for none."""
    return _get(session, t.Building, building_id)


def grid(session: Session, grid_id: int | None) -> t.Grid | None:
    """A grid by id (active or not), None for none."""
    return _get(session, t.Grid, grid_id)


def building_by_code(session: Session, code: str) -> t.Building:
    active = _index(registry_cache.snapshot(session), "building")
    values = active.get(code.strip().upper()) or active.get(code.strip())
    if values is None:
        raise NotFound(what=code)
    return _row(session, t.Building, values)


def category(session: Session, community_id: int, code: str) -> t.Category | None:
    values = _index(registry_cache.snapshot(session), "category").get((community_id, code))
    return _row(session, t.Category, values) if values is not None else None


def posts_of(session: Session, community_id: int) -> list[t.Post]:
    found = sorted((p for p in registry_cache.snapshot(session).of(t.Post).values()
                    if p["community_id"] == community_id and p["active"]), key=lambda p: p["code"])
    return [_row(session, t.Post, p) for p in found]


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
    snap = registry_cache.snapshot(session)
    grid_row = snap.of(t.Grid)[building.grid_id]
    committee = snap.of(t.Committee).get(grid_row["committee_id"])
    post = min((p for p in snap.of(t.Post).values()
                if p["grid_id"] == grid_row["id"] and p["kind"] == "grid" and p["active"]),
               key=lambda p: p["id"], default=None)
    if post is None:
        raise NotFound(what=grid_row["code"])
    people = snap.of(t.Person)
    a = people[post["a_holder_id"]]
    b = people.get(post["b_holder_id"]) if post["b_holder_id"] else None
    return GridSign(
        building=building.name,
        building_code=building.code,
        committee=committee["name"] if committee else "",
        grid=grid_row["name"],
        grid_code=grid_row["code"],
        worker=a["name"],
        worker_phone=a["phone"],
        post=post["name"],
        backup=b["name"] if b else None,
        backup_phone=b["phone"] if b else None,
    )
