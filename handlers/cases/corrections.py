"""What staff corrected in the reading of residents' messages, read off the case events, for the
director's figures and as training data (`griddesk nlu corrections`).

A case's reading is corrected by:
- a reclassification (`lifecycle.reclassify`): the new kind and category are the staff's word;
- a transfer to a post that does not own the case's category (a transfer that follows a
  reclassification is its re-routing, not a second correction): the new category is the one
  the post owns when it owns one, else unknown (a grid post owns several); a transfer of a
  request to the mediation centre reads it as a complaint;
- a return (退单) with a reason, by a person: the category was wrong, the right one unknown
  until the front desk transfers the case on (a transfer to a post owning the case's category
  says the return was about something else, and the case counts as read right).

One correction per case: from its first reading (the "created" event) to its last reading.
Exported training examples carry no personal data: phone and ID numbers, rooms and units, and the
names of the registry's residents and staff are masked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage import tables as t

CORRECTING = ("reclassified", "transferred", "returned")
GRID_OWNER = "grid"
UNKNOWN = "?"


@dataclass(frozen=True)
class Correction:
    case_id: int
    number: str
    text: str
    at: dt.datetime  # when the last correction was made
    from_kind: str
    from_category: str
    to_kind: str
    to_category: str | None  # None: a post took it that owns several categories, or a return

    @property
    def confusion(self) -> str:
        return f"{self.from_category}→{self.to_category or UNKNOWN}"


def categories_of(session: Session, community_id: int) -> list[t.Category]:
    return list(session.scalars(select(t.Category).where(col(t.Category.community_id) == community_id)
                                .order_by(col(t.Category.code))))


def _owned(cats: Sequence[t.Category], post: t.Post) -> list[str]:
    """The categories `post` owns: by its code, and every "grid" category for a grid post."""
    return [c.code for c in cats
            if c.post_code == post.code or (c.post_code == GRID_OWNER and post.kind == "grid")]


def read(session: Session, community_id: int, *, since: dt.datetime | None = None,
         dispatched: tuple[dt.datetime, dt.datetime] | None = None,
         case_filter: object | None = None) -> list[Correction]:
    """The community's corrected cases, oldest correction first. `since`: corrections made
    then or later; `dispatched`: cases dispatched in [start, end); `case_filter`: an extra SQL
    condition on the case (figures leave out withdrawn cases)."""
    cats = categories_of(session, community_id)
    posts = {p.code: p for p in session.scalars(select(t.Post).where(col(t.Post.community_id) == community_id))}
    conditions = [col(t.Case.community_id) == community_id]
    if dispatched is not None:
        conditions += [col(t.Case.dispatched_at) >= dispatched[0], col(t.Case.dispatched_at) < dispatched[1]]
    if case_filter is not None:
        conditions.append(case_filter)  # type: ignore[arg-type]
    touched = (select(col(t.CaseEvent.case_id)).where(col(t.CaseEvent.action).in_(CORRECTING)).distinct())
    found = session.scalars(select(t.Case).where(*conditions, col(t.Case.id).in_(touched)).order_by(col(t.Case.id)))
    out = []
    for case in found:
        events = session.scalars(select(t.CaseEvent).where(col(t.CaseEvent.case_id) == case.id)
                                 .order_by(col(t.CaseEvent.seq))).all()
        corrected = _walk(case, events, cats, posts)
        if corrected is not None and (since is None or _utc(corrected.at) >= _utc(since)):
            out.append(corrected)
    return sorted(out, key=lambda c: (_utc(c.at), c.case_id))


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _walk(case: t.Case, events: Iterable[t.CaseEvent], cats: Sequence[t.Category],
          posts: dict[str, t.Post]) -> Correction | None:
    first: tuple[str, str] | None = None
    kind, category = case.kind, case.category
    known, corrected, after_reclassify = True, False, False
    last_at: dt.datetime | None = None
    for ev in events:
        data = ev.data or {}
        if ev.action == "created":
            kind, category = str(data.get("kind", kind)), str(data.get("category", category))
            first = (kind, category)
        elif ev.action == "reclassified":
            kind, category = str(data["to_kind"]), str(data["to_category"])
            known, corrected, last_at = True, True, ev.at
        elif ev.action == "transferred" and not after_reclassify:
            post = posts.get(str(data.get("to_post")))
            if post is None:
                pass
            elif post.kind == "mediation":
                if kind != "complaint":
                    kind, known, corrected, last_at = "complaint", True, True, ev.at
            elif (owned := _owned(cats, post)) and category not in owned:
                category = owned[0] if len(owned) == 1 else UNKNOWN
                known, corrected, last_at = len(owned) == 1, True, ev.at
            elif owned and not known and category != UNKNOWN:
                known = True  # a return about something else: the category stood
        elif ev.action == "returned" and ev.actor_person_id is not None and ev.note.strip():
            known, last_at = False, ev.at
        after_reclassify = ev.action == "reclassified"
    if first is None or last_at is None or not (corrected or not known):
        return None
    to_category = category if known and category != UNKNOWN else None
    if (kind, to_category) == first:
        return None
    return Correction(case_id=case.id or 0, number=case.number, text=case.text, at=last_at,
                      from_kind=first[0], from_category=first[1], to_kind=kind, to_category=to_category)


def confusions(corrected: Sequence[Correction], top: int = 5) -> list[tuple[str, int]]:
    """The most frequent from→to category confusions (kind changes as kind.from→kind.to)."""
    counts: Counter[str] = Counter()
    for c in corrected:
        if c.to_category != c.from_category:
            counts[c.confusion] += 1
        elif c.to_kind != c.from_kind:
            counts[f"{c.from_kind}→{c.to_kind}"] += 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


# --------------------------------------------------------------------------- masking

# An 18-character resident ID number (the last may be X); read before phones, which it contains.
_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_PHONE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d(?:[\s-]?\d){8}(?!\d)"
                    r"|(?<!\d)0\d{2,3}[\s-]?\d{7,8}(?!\d)")
_CN_DIGIT = r"\d+"
_ROOM = re.compile(
    rf"{_CN_DIGIT}\s*(?:[栋棟幢座]|[号號][楼樓]|[楼樓])(?:\s*{_CN_DIGIT}\s*[单單]元)?(?:\s*\d+\s*[室号號]?)?"
    rf"|{_CN_DIGIT}\s*[单單]元(?:\s*\d+\s*[室号號]?)?"
    r"|\d+\s*[室房](?![间間子])"
    r"|(?<!\d)\d{1,3}-\d{1,2}-\d{3,4}(?!\d)"
    r"|(?i:\b(?:room|rm|flat|apt|apartment|unit|building|bldg|block|no\.?)\s*#?\s*\d+[a-z]?\b)")
MASKS = {"id": "<id>", "phone": "<phone>", "room": "<room>", "name": "<name>"}


def registry_names(session: Session, community_id: int) -> list[str]:
    """The names of the community's residents and staff, longest first (a name inside another
    is masked as part of the longer one). One-character names would mask ordinary words."""
    names = set(session.scalars(select(col(t.Resident.name)).where(col(t.Resident.community_id) == community_id)))
    names |= set(session.scalars(select(col(t.Person.name)).where(col(t.Person.community_id) == community_id)))
    return sorted((n.strip() for n in names if n and len(n.strip()) >= 2), key=lambda n: (-len(n), n))


def mask(text: str, names: Sequence[str] = ()) -> str:
    """`text` with ID numbers, phones, rooms and the given names replaced by placeholders."""
    text = _ID.sub(MASKS["id"], text)
    text = _PHONE.sub(MASKS["phone"], text)
    text = _ROOM.sub(MASKS["room"], text)
    for name in names:
        text = re.sub(re.escape(name), MASKS["name"], text, flags=re.IGNORECASE)
    return text


# --------------------------------------------------------------------------- Rasa NLU YAML


def _one_line(text: str) -> str:
    return " ".join(text.split())


def to_rasa_yaml(corrected: Sequence[Correction], names: Sequence[str] = ()) -> str:
    """The corrections as Rasa NLU YAML: each masked text under its corrected category and,
    when the kind was corrected, under its kind too (the labels of the two heads never clash).
    Corrections whose category is unknown give a kind example only, if any."""
    by_label: dict[str, list[str]] = {}
    for c in corrected:
        text = _one_line(mask(c.text, names))
        if not text:
            continue
        labels = []
        if c.to_category is not None:
            labels.append(c.to_category)
        if c.to_kind != c.from_kind:
            labels.append(c.to_kind)
        for label in labels:
            if text not in by_label.setdefault(label, []):
                by_label[label].append(text)
    lines = ["# Staff corrections of the category (and kind) of residents' messages;",
             "# personal data masked. Train with: griddesk nlu train --extra THIS_FILE",
             'version: "3.1"', "nlu:"]
    for label in sorted(by_label):
        lines += [f"- intent: {label}", "  examples: |"]
        lines += [f"    - {text}" for text in by_label[label]]
    return "\n".join(lines) + "\n"


def export(session: Session, *, since: dt.datetime | None = None,
           community_code: str | None = None) -> tuple[str, int]:
    """Every community's corrections (or one community's) as masked Rasa NLU YAML, and how
    many corrected cases they hold."""
    from handlers.registry import (
        directory,  # directory imports the registry's tables; only needed here
    )

    found: list[Correction] = []
    names: set[str] = set()
    for community in directory.communities(session, community_code):
        found += read(session, community.id or 0, since=since)
        names |= set(registry_names(session, community.id or 0))
    ordered = sorted(names, key=lambda n: (-len(n), n))
    return to_rasa_yaml(found, ordered), len(found)
