"""The front desk's queue (前台分派): cases given back (退单) and cases nobody could be found for
— an unknown address, a category nobody owns, both holders away — which routing left at the
front desk post. Routing one is one step: a post, and the chat's own transfer.

    queue = triage.queue(session, person, now)             # most pressing deadline first
    triage.route(session, case, person, "G01", note, now)   # = /transfer N G01 note

The queue is for the front desk and the director, who handle every case of their community in
chat too (`lifecycle._may_handle`); anybody else is refused.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.cases import lifecycle, listing
from handlers.errors import NotAllowed
from handlers.registry import directory
from storage import tables as t
from storage.tables import OPEN_STATES, CaseState

ROLES = ("front_desk", "director")
MAX_QUEUE = 200


def check_allowed(person: t.Person) -> None:
    if not any(person.has_role(role) for role in ROLES):
        raise NotAllowed("the front desk's queue")


def _front_desk_posts(community_id: int) -> Any:
    return select(col(t.Post.id)).where(col(t.Post.community_id) == community_id, col(t.Post.kind) == "front_desk")


@dataclass(frozen=True)
class Waiting:
    """A case in the queue, with why it is there and the post it most likely belongs to."""

    row: listing.Row
    returned: bool
    building: str
    suggested: str  # a post code: the grid post of the case's grid, or ""


def queue(session: Session, person: t.Person, now: dt.datetime, limit: int = MAX_QUEUE) -> list[Waiting]:
    """Open cases returned to the front desk or held at its post, most pressing deadline first."""
    check_allowed(person)
    stmt = (select(t.Case)
            .where(col(t.Case.community_id) == person.community_id, col(t.Case.state).in_(OPEN_STATES),
                   or_(col(t.Case.state) == CaseState.RETURNED,
                       col(t.Case.post_id).in_(_front_desk_posts(person.community_id)),
                       col(t.Case.post_id).is_(None)))
            .order_by(lifecycle.next_due_column(), col(t.Case.id)).limit(limit))
    found = list(session.scalars(stmt))
    grid_posts = {p.grid_id: p.code for p in directory.posts_of(session, person.community_id)
                  if p.kind == "grid" and p.grid_id}
    building_ids = {c.building_id for c in found if c.building_id}
    buildings = {b.id: b.name for b in session.scalars(select(t.Building)
                                                       .where(col(t.Building.id).in_(building_ids)))}
    return [Waiting(row=row, returned=row.case.state == CaseState.RETURNED,
                    building=buildings.get(row.case.building_id, "") if row.case.building_id else "",
                    suggested=grid_posts.get(row.case.grid_id, "") if row.case.grid_id else "")
            for row in listing.rows(session, found, now)]


def posts(session: Session, person: t.Person) -> list[t.Post]:
    """The posts a case can be routed to: every active post but the front desk itself."""
    return [p for p in directory.posts_of(session, person.community_id) if p.kind != "front_desk"]


def route(session: Session, case: t.Case, person: t.Person, post_code: str, note: str,
          now: dt.datetime) -> t.Case:
    """Send a queued case to `post_code` through the chat's transfer: the new holder gets the
    case card, the resident hears who has it, the first responder is told."""
    check_allowed(person)
    return lifecycle.transfer(session, case, person, post_code, note.strip(), now)
