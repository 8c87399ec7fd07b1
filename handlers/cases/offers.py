"""What a conversation opens with, and which of its old buttons still do what they offered.

A chat that keeps its history (the web chat) shows buttons again after a reload. Whether one
still applies is the case desk's rule, not the page's: an acknowledged case's card offers 答复,
转办, 办结 and 退单 but no longer 签收, whichever message carried it. `still_offered` answers
that from the case as it stands now; for a button that names no case (a choice in a dialogue)
it does not know, and the caller goes by whether it was pressed.

The greeting says who the person is to us and what they can do here: a resident their matters,
photos, locations and commands; a newcomer where they live; staff what each of their roles
brings them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.cases import lifecycle
from handlers.conversation import Button, Reply
from handlers.registry import directory, residents
from handlers.replies import say
from storage import tables as t
from storage.tables import OPEN_STATES, CaseState

# Staff steps on a case, offered as the case's card buttons (lifecycle.staff_buttons).
STAFF_STEPS = ("ack", "rep", "trf", "res", "ret", "rcl")
# Roles in the order their lines appear in a staff member's greeting.
ROLES = ("grid_worker", "specialist", "mediator", "front_desk", "secretary", "director", "duty_leader")


@dataclass(frozen=True)
class PostsHeld:
    """A staff member's posts: those they hold themselves (A) and those they cover (B)."""

    own: list[t.Post]
    covering: list[t.Post]


def posts_held(session: Session, person: t.Person) -> PostsHeld:
    """Active posts the person holds as A, then those they hold as B, each by code."""
    rows = list(session.scalars(
        select(t.Post).where(col(t.Post.active).is_(True),
                             or_(col(t.Post.a_holder_id) == person.id, col(t.Post.b_holder_id) == person.id))
        .order_by(col(t.Post.code))))
    return PostsHeld(own=[p for p in rows if p.a_holder_id == person.id],
                     covering=[p for p in rows if p.a_holder_id != person.id])


# --------------------------------------------------------------------------- old buttons


def still_offered(session: Session, action: str) -> bool | None:
    """Whether a button with `action` would be offered on its case now: True or False for a
    step on a case, None for a button that names no case (the caller decides by other means)."""
    prefix, _, rest = action.partition(":")
    ref = rest.split(":", 1)[0]
    if prefix not in (*STAFF_STEPS, "case", "sts", "rate", "reo", "add", "wd"):
        return None
    case = t.by_id(session, t.Case, ref)
    if case is None:
        return False
    if prefix in ("case", "sts"):  # looking at a case is always possible
        return True
    if prefix in STAFF_STEPS:
        return any(act == f"{prefix}:{case.id}" for row in lifecycle.staff_buttons(case) for _, act in row)
    if prefix == "rate":
        return case.state == CaseState.RESOLVED
    if prefix == "reo":
        return case.state in (CaseState.RESOLVED, CaseState.CLOSED) and not lifecycle.is_withdrawn(case)
    return case.state in OPEN_STATES  # add, wd


# --------------------------------------------------------------------------- the greeting


def welcome(session: Session, lang: str, *, person: t.Person | None = None,
            resident: t.Resident | None = None) -> list[Reply]:
    """What a conversation opens with, in `lang`."""
    if person is not None:
        return [Reply(_staff_welcome(session, person, lang))]
    if resident is None or resident.building_id is None:
        rows = tuple((Button(c.name, f"com:{c.code}"),) for c in residents.committees(session))
        return [Reply(say(lang, "welcome.newcomer"), buttons=rows)]
    community = directory.community(session, resident.community_id)
    building = session.get(t.Building, resident.building_id)
    return [Reply(say(lang, "welcome.resident", name=resident.name or "", community=community.name,
                      building=building.name if building else ""))]


def _staff_welcome(session: Session, person: t.Person, lang: str) -> str:
    held = posts_held(session, person)
    posts = "、".join(p.name for p in held.own) if lang != "en" else ", ".join(p.name for p in held.own)
    covering = ("、" if lang != "en" else ", ").join(p.name for p in held.covering)
    lines = [say(lang, "welcome.staff", name=person.name, posts=posts or "—")]
    if covering:
        lines.append(say(lang, "welcome.staff_covering", posts=covering))
    lines += [say(lang, f"welcome.role.{role}") for role in ROLES if person.has_role(role)]
    lines.append(say(lang, "welcome.staff_more"))
    return "\n".join(lines)
