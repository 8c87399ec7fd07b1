"""Load a community registry file into the database, idempotently.

    griddesk registry load config/example-community.yaml

A second load of the same file changes nothing. A changed file updates rows in place by code;
what disappeared from the file is deactivated, never deleted, and open cases held by a post that
disappeared go back to the front desk, so no case is orphaned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.errors import RegistryError
from handlers.registry.schema import Broken, RegistryFile, reference_errors
from handlers.registry.schema import Community as CommunitySpec
from storage import tables as t

Loc = tuple[str | int, ...]


# --------------------------------------------------------------------------- reading


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    child = value
                    break
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(node.value)):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _field(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


class _Located:
    """Names a place in the file as people read it: "FILE:LINE: FIELD"."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path, self.root = path, root

    def __call__(self, loc: Loc) -> str:
        return f"{self.path}:{_line_of(self.root, loc)}: {_field(loc)}"

    def problem(self, broken: Broken) -> str:
        text = f"{self(broken.loc)}: {broken.message}"
        return f"{text} (first at {self(broken.also)})" if broken.also is not None else text


def read_registry(path: str | Path) -> tuple[RegistryFile, str]:
    """Parse and validate a registry file; returns it with its content hash.

    Raises RegistryError listing every problem as "FILE:LINE: FIELD: message".
    """
    registry, digest, _ = _read(Path(path))
    return registry, digest


def _read(path: Path) -> tuple[RegistryFile, str, _Located]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError([f"{path}: cannot read: {exc}"]) from exc
    try:
        root = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RegistryError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if not isinstance(data, dict):
        raise RegistryError([f"{path}:1: (file): expected a mapping with 'version' and 'communities'"])
    located = _Located(path, root)
    try:
        registry = RegistryFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(f"{located(loc)}: {err['msg']}")
        raise RegistryError(problems) from exc
    broken = reference_errors(registry)
    if broken:
        raise RegistryError([located.problem(b) for b in broken])
    return registry, hashlib.sha256(text.encode("utf-8")).hexdigest(), located


def _owned_elsewhere(session: Session, registry: RegistryFile) -> list[tuple[Loc, str]]:
    """Codes of the file that the database already gives to a community this file does not
    describe (loaded from another file): loading them would move those rows to this file's
    community. A community of this same file may hand its rows to another one of the file."""
    in_file = {c.code for c in registry.communities}
    owners = {c.id: c for c in session.scalars(select(t.Community))}
    committees = list(session.scalars(select(t.Committee)))
    grids = list(session.scalars(select(t.Grid)))
    community_of_committee = {k.id: k.community_id for k in committees}
    community_of_grid = {g.id: community_of_committee.get(g.committee_id) for g in grids}
    committee_owner = {k.code: k.community_id for k in committees}
    grid_owner = {g.code: community_of_grid[g.id] for g in grids}
    building_owner = {b.code: community_of_grid.get(b.grid_id) for b in session.scalars(select(t.Building))}
    person_owner = {p.code: p.community_id for p in session.scalars(select(t.Person))}

    found: list[tuple[Loc, str]] = []

    def check(owner_id: int | None, what: str, code: str, loc: Loc) -> None:
        owner = owners.get(owner_id) if owner_id is not None else None
        if owner is not None and owner.code not in in_file:
            message = (f"{what} {code!r} already belongs to community {owner.code} "
                       f"({owner.name}); it belongs to one community")
            found.append((loc, message))

    for ci, com in enumerate(registry.communities):
        here: Loc = ("communities", ci)
        for pi, person in enumerate(com.people):
            check(person_owner.get(person.id), "person id", person.id, here + ("people", pi, "id"))
        for ki, committee in enumerate(com.committees):
            kloc = here + ("committees", ki)
            check(committee_owner.get(committee.code), "committee code", committee.code, kloc + ("code",))
            for gi, grid in enumerate(committee.grids):
                gloc = kloc + ("grids", gi)
                check(grid_owner.get(grid.code), "grid code", grid.code, gloc + ("code",))
                for bi, building in enumerate(grid.buildings):
                    check(building_owner.get(building.code), "building code", building.code,
                          gloc + ("buildings", bi, "code"))
    return found


# --------------------------------------------------------------------------- writing


@dataclass
class LoadSummary:
    communities: list[str] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    rerouted_cases: list[str] = field(default_factory=list)
    unchanged: bool = False

    def describe(self) -> str:
        if self.unchanged:
            return f"registry unchanged ({', '.join(self.communities)})"
        text = (
            f"loaded {', '.join(self.communities)}: {self.created} created, "
            f"{self.updated} updated, {self.deactivated} deactivated"
        )
        if self.rerouted_cases:
            text += f"; open cases back to the front desk: {', '.join(self.rerouted_cases)}"
        return text


class _Sync:
    """Upserts rows by a natural key and counts what changed."""

    def __init__(self, session: Session, summary: LoadSummary) -> None:
        self.session = session
        self.summary = summary

    def upsert(
        self,
        model: type[Any],
        where: dict[str, Any],
        values: dict[str, Any],
        create_only: dict[str, Any] | None = None,
    ) -> Any:
        stmt = select(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        row = self.session.scalars(stmt).first()
        if row is None:
            row = model(**where, **values, **(create_only or {}))
            self.session.add(row)
            self.session.flush()
            self.summary.created += 1
            return row
        changed = False
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changed = True
        if changed:
            self.summary.updated += 1
            self.session.flush()
        return row

    def deactivate_missing(self, model: type[Any], keep_ids: set[int], **where: Any) -> list[Any]:
        stmt = select(model).where(model.active.is_(True))
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        gone = [row for row in self.session.scalars(stmt) if row.id not in keep_ids]
        for row in gone:
            row.active = False
            self.summary.deactivated += 1
        return gone


def load_registry(session: Session, path: str | Path, now: dt.datetime) -> LoadSummary:
    """Read, validate and apply a registry file in one transaction (the caller commits).

    Refused, with nothing written, when the file is invalid or names a person, committee, grid
    or building that belongs to a community of another file."""
    registry, digest, located = _read(Path(path))
    taken = _owned_elsewhere(session, registry)
    if taken:  # refused before anything is written
        raise RegistryError([f"{located(loc)}: {message}" for loc, message in taken])
    summary = LoadSummary(communities=[c.code for c in registry.communities])
    existing = {
        c.code: c.registry_hash
        for c in session.scalars(
            select(t.Community).where(col(t.Community.code).in_(summary.communities)))
    }
    if existing and all(existing.get(code) == digest for code in summary.communities):
        summary.unchanged = True
        return summary
    sync = _Sync(session, summary)
    for spec in registry.communities:
        _apply_community(sync, spec, digest, now)
    return summary


def _apply_community(sync: _Sync, spec: CommunitySpec, digest: str, now: dt.datetime) -> None:
    session = sync.session
    community = sync.upsert(
        t.Community,
        {"code": spec.code},
        {
            "name": spec.name,
            "district": spec.district,
            "city": spec.city,
            "timezone": spec.timezone,
            "work_start": spec.working_hours.start,
            "work_end": spec.working_hours.end,
            "urgent_ack_minutes": spec.urgent_limits.acknowledge_minutes,
            "urgent_reply_minutes": spec.urgent_limits.reply_minutes,
            "urgent_resolve_hours": spec.urgent_limits.resolve_hours,
            "council_name": spec.council.name if spec.council else "",
            "council_secretary_post": spec.council.secretary_post if spec.council else "",
            "co_sign_threshold": spec.council.co_sign_threshold if spec.council else 10,
            "registry_hash": digest,
        },
    )
    cid = community.id
    committee_ids: set[int] = set()
    grid_ids: dict[str, int] = {}
    building_ids: dict[str, int] = {}
    for k in spec.committees:
        committee = sync.upsert(t.Committee, {"code": k.code}, {"community_id": cid, "name": k.name, "active": True})
        committee_ids.add(committee.id)
        for g in k.grids:
            grid = sync.upsert(
                t.Grid,
                {"code": g.code},
                {"committee_id": committee.id, "name": g.name, "households": g.households, "active": True},
            )
            grid_ids[g.code] = grid.id
            for b in g.buildings:
                building = sync.upsert(
                    t.Building,
                    {"code": b.code},
                    {
                        "grid_id": grid.id,
                        "name": b.name,
                        "latitude": b.latitude,
                        "longitude": b.longitude,
                        "active": True,
                    },
                )
                building_ids[b.code] = building.id
    old_committees = sync.deactivate_missing(t.Committee, committee_ids, community_id=cid)
    all_committees = committee_ids | {c.id for c in old_committees}
    for committee_id in all_committees:
        sync.deactivate_missing(t.Grid, set(grid_ids.values()), committee_id=committee_id)
    for grid_id in set(grid_ids.values()):
        sync.deactivate_missing(t.Building, set(building_ids.values()), grid_id=grid_id)

    person_ids: dict[str, int] = {}
    for p in spec.people:
        person = sync.upsert(
            t.Person,
            {"code": p.id},
            {
                "community_id": cid,
                "name": p.name,
                "roles": ",".join(p.roles),
                "phone": p.phone,
                "language": p.language,
                "active": True,
                "notify_order": ",".join(p.notify_order),
                # Set by the file when it names one, else kept (`griddesk wecom sync --apply`).
                **({"wecom_userid": p.wecom_userid.lower()} if p.wecom_userid else {}),
            },
        )
        person_ids[p.id] = person.id
        _sync_leave(sync, person.id, [(lv.start, lv.end, lv.reason) for lv in p.leave])
        # A WeCom member id stays on the person: its chat identity is made by the WeCom channel
        # when it is configured (bot/channels/wecom.bind_members), so notices never wait for a
        # channel that is not there.
        for channel, address in (("telegram", p.telegram_id), ("wechat", p.wechat_openid)):
            if address is not None:
                sync.upsert(
                    t.Identity,
                    {"channel": channel, "address": str(address)},
                    {"person_id": person.id, "resident_id": None},
                    {"created_at": now},
                )
    sync.deactivate_missing(t.Person, set(person_ids.values()), community_id=cid)

    post_ids: set[int] = set()
    for post in spec.posts:
        row = sync.upsert(
            t.Post,
            {"community_id": cid, "code": post.code},
            {
                "name": post.name,
                "kind": post.kind,
                "grid_id": grid_ids.get(post.grid) if post.grid else None,
                "a_holder_id": person_ids[post.a],
                "b_holder_id": person_ids[post.b] if post.b else None,
                "active": True,
            },
        )
        post_ids.add(row.id)
    gone_posts = sync.deactivate_missing(t.Post, post_ids, community_id=cid)

    roster: dict[str, str] = dict(spec.duty_roster.weekly.items())
    roster.update({d.isoformat(): p for d, p in spec.duty_roster.dates.items()})
    current = {d.day: d for d in session.scalars(
        select(t.DutyDay).where(col(t.DutyDay.community_id) == cid))}
    for day, code in roster.items():
        sync.upsert(t.DutyDay, {"community_id": cid, "day": day}, {"person_id": person_ids[code]})
    for day, row in current.items():
        if day not in roster:
            session.delete(row)
            sync.summary.deactivated += 1

    codes = set()
    for cat in spec.categories:
        codes.add(cat.code)
        sync.upsert(
            t.Category,
            {"community_id": cid, "code": cat.code},
            {
                "name": cat.name,
                "post_code": cat.post,
                "acknowledge_hours": cat.limits.acknowledge_hours,
                "reply_days": cat.limits.reply_days,
                "resolve_days": cat.limits.resolve_days,
            },
        )
    for row in session.scalars(select(t.Category).where(t.Category.community_id == cid)):
        if row.code not in codes:
            session.delete(row)
            sync.summary.deactivated += 1

    for r in spec.demo_residents:
        sync.upsert(
            t.Resident,
            {"community_id": cid, "name": r.name, "demo": True},
            {
                "building_id": building_ids[r.building],
                "unit": r.unit,
                "room": r.room,
                "phone": r.phone,
                "language": r.language,
            },
            {"created_at": now},
        )
    session.flush()
    if gone_posts:
        from handlers.cases.lifecycle import return_orphans_to_front_desk

        sync.summary.rerouted_cases += return_orphans_to_front_desk(
            session, community, {p.id for p in gone_posts}, now
        )


def _sync_leave(sync: _Sync, person_id: int, wanted: list[tuple[dt.date, dt.date, str]]) -> None:
    session = sync.session
    have = sorted(
        (lv.start, lv.end, lv.reason)
        for lv in session.scalars(select(t.Leave).where(col(t.Leave.person_id) == person_id))
    )
    if have == sorted(wanted):
        return
    session.execute(delete(t.Leave).where(col(t.Leave.person_id) == person_id))
    for start, end, reason in wanted:
        session.add(t.Leave(person_id=person_id, start=start, end=end, reason=reason))
    sync.summary.updated += 1
