"""The case desk: open, acknowledge, reply, transfer, return, resolve, rate, reopen.

首问负责制 (first-responder accountability): the staff member who first acknowledges a case is
its first responder. They stay accountable through every transfer, are told of every later step,
and theirs is the name the resident is given. Every change is an append-only CaseEvent.

Each function changes the case, appends its event and queues its notices in the caller's
transaction; the caller commits once, so a case never exists without its notices.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.conversation import Attachment
from handlers.deadlines import Deadlines, TimeLimits, UrgentLimits, compute_deadlines
from handlers.errors import BadInput, InvalidState, NotFound
from handlers.notify import Localised, MessageValue, moment, phrase, tell
from handlers.registry import directory
from handlers.replies import say, when
from handlers.routing import Route, route, seat_holder
from storage import media
from storage import tables as t
from storage.clock import as_utc
from storage.log_context import note_case
from storage.sequences import append_event, new_history, next_in_counter
from storage.tables import OPEN_STATES, CaseState
from storage.unit_of_work import transaction_memo

log = logging.getLogger(__name__)
# Limits used when a category is missing from the registry (an unroutable category).
FALLBACK_LIMITS = TimeLimits(acknowledge_hours=4, reply_days=2, resolve_days=10)
RATINGS = {"s": "satisfied", "b": "basically_satisfied", "u": "unsatisfied"}
WAITING_FOR_ACK = (CaseState.ASSIGNED, CaseState.TRANSFERRED, CaseState.RETURNED, CaseState.REOPENED)

# Who hears that a case another workflow opened was resolved, keyed by what opened it: the
# council registers itself for "proposal" (the execution case of its decision), so the desk never
# imports the council. A hook answers True when it told and asked the resident itself.
ResolvedHook = Callable[[Session, t.Case, t.Person, str, dt.datetime], bool]
_RESOLVED_HOOKS: dict[str, ResolvedHook] = {}


def on_resolved(opened_by: str, hook: ResolvedHook) -> None:
    """Let the workflow that opens cases of the kind `opened_by` hear of their resolution."""
    _RESOLVED_HOOKS[opened_by] = hook


_OPENED = "cases:opened"


def opened_in(session: Session) -> list[str]:
    """The kinds of the cases opened in the session's transaction so far (one a rolled-back
    savepoint opened is not among them)."""
    return list(transaction_memo(session).get(_OPENED, []))


def opened_by(case: t.Case) -> str | None:
    """What opened the case, when another workflow did: "proposal" for a council decision's execution."""
    return "proposal" if case.proposal_id is not None else None


# --------------------------------------------------------------------------- helpers


def next_number(session: Session, community: t.Community, now: dt.datetime) -> str:
    """The next human-friendly case number of the community's local day: ZN-20261121-0007."""
    day = directory.calendar_of(community).local_date(now).strftime("%Y%m%d")
    # At once: no filing waits for another's transaction to end; a message that then fails
    # leaves its number unused (storage.sequences.next_in_counter).
    seq = next_in_counter(session, t.CaseCounter, at_once=True, community_id=community.id, day=day)
    return f"{community.code}-{day}-{seq:04d}"


def record(
    session: Session,
    case: t.Case,
    action: str,
    now: dt.datetime,
    *,
    person: t.Person | None = None,
    resident: t.Resident | None = None,
    note: str = "",
    **data: Any,
) -> None:
    """Append one event to the case's history."""
    note_case(case.number)  # later lines of this message or request name the case too
    log.info("case event: %s", action, extra={"case": case.number})  # never the note: it is people's words
    append_event(session, t.CaseEvent, "case_id", case.id, at=now, action=action,
                 person=person, resident=resident, note=note, data=data)


def history(session: Session, case: t.Case) -> list[t.CaseEvent]:
    return list(
        session.scalars(select(t.CaseEvent).where(col(t.CaseEvent.case_id) == case.id)
                        .order_by(col(t.CaseEvent.seq)))
    )


def _person(session: Session, person_id: int | None) -> t.Person | None:
    return session.get(t.Person, person_id) if person_id else None


def accountable(session: Session, case: t.Case) -> t.Person:
    """The name the resident is given: the first responder, else the current holder."""
    person = _person(session, case.first_responder_id) or _person(session, case.holder_id)
    assert person is not None
    return person


def _post_name(session: Session, post_id: int | None) -> str:
    post = session.get(t.Post, post_id) if post_id else None
    return post.name if post else ""


def _post_of_person(session: Session, case: t.Case, person: t.Person) -> str:
    """The post a person acts in on this case: the case's post when they hold it, else their own."""
    post = session.get(t.Post, case.post_id) if case.post_id else None
    if post is not None and person.id in (post.a_holder_id, post.b_holder_id):
        return post.name
    own = session.scalars(
        select(t.Post).where(
            col(t.Post.active).is_(True),
            or_(col(t.Post.a_holder_id) == person.id, col(t.Post.b_holder_id) == person.id),
        )
    ).first()
    return own.name if own else ""


def staff_buttons(case: t.Case) -> list[list[tuple[str, str]]]:
    """The steps the case's state allows, as (label key, action) rows: acknowledge only while it
    waits to be taken up, return only when it is not already back at the front desk, nothing
    once it is resolved or closed. Each step function refuses the others all the same."""
    cid = case.id
    if case.state not in OPEN_STATES:
        return []
    rows = [
        [("button.acknowledge", f"ack:{cid}")] if case.state in WAITING_FOR_ACK else [],
        [("button.reply", f"rep:{cid}"), ("button.transfer", f"trf:{cid}")],
        [("button.resolve", f"res:{cid}")]
        + ([("button.return", f"ret:{cid}")] if case.state != CaseState.RETURNED else []),
        [("button.reclassify", f"rcl:{cid}")],
    ]
    return [row for row in rows if row]


def rating_buttons(case: t.Case) -> list[list[tuple[str, str]]]:
    cid = case.id
    return [
        [("rating.satisfied", f"rate:{cid}:s"), ("rating.basically_satisfied", f"rate:{cid}:b")],
        [("rating.unsatisfied", f"rate:{cid}:u")],
    ]


def _resident(session: Session, case: t.Case) -> t.Resident:
    resident = session.get(t.Resident, case.resident_id)
    assert resident is not None
    return resident


def _community(session: Session, case: t.Case) -> t.Community:
    return directory.community(session, case.community_id)


# Stands for an optional line with nothing to say; the card leaves such lines out.
_NO_LINE = "\x00"
# A location's label is the resident's (or their map app's) words: the card keeps it short.
MAX_LABEL = 60
# The photos and voice messages a case card carries to staff on a channel that can show or play
# them; the web chat lists every one.
MAX_CARD_MEDIA = 5


def attachments_of(session: Session, case: t.Case) -> list[t.Attachment]:
    """What the resident sent with the case (photos, voice messages, locations), oldest first."""
    return list(session.scalars(
        select(t.Attachment).where(col(t.Attachment.case_id) == case.id)
        .order_by(col(t.Attachment.id))))


def where_of(att: t.Attachment) -> str:
    """A location as people read it: its label, else its coordinates."""
    label = att.ref.strip()
    if label:
        return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"
    if att.latitude is not None and att.longitude is not None:
        return f"{att.latitude:.5f}, {att.longitude:.5f}"
    return "—"


def sent_line(sent: Sequence[t.Attachment], lang: str) -> str:
    """One line saying what the resident sent: how many photos (and voice messages), and each
    location; "" when they sent nothing but text."""
    items = []
    for kind, key in (("photo", "case.sent_photos"), ("voice", "case.sent_voices")):
        count = sum(1 for a in sent if a.kind == kind)
        if count:
            items.append(say(lang, key, count=count))
    items += [say(lang, "case.sent_location", where=where_of(a)) for a in sent if a.kind == "location"]
    return say(lang, "case.card_sent", items=" · ".join(items)) if items else ""


def case_card(session: Session, case: t.Case, lang: str, *, with_contact: bool,
              sent: Sequence[t.Attachment] | None = None) -> str:
    """The case as a staff member sees it; contact details only for those handling it.
    `sent` is the case's attachments when the caller has read them already."""
    community = _community(session, case)
    resident = _resident(session, case)
    building = directory.building(session, case.building_id)
    place = building.name if building else say(lang, "case.unknown_address")
    if with_contact:
        if resident.unit or resident.room:
            place += f" {resident.unit}-{resident.room}".rstrip("-")
        contact = say(lang, "case.card_contact", name=resident.name or "—", phone=resident.phone or "—")
    else:
        contact = ""
    cat = directory.category(session, case.community_id, case.category)
    card = say(
        lang,
        "case.card",
        number=case.number,
        urgent=say(lang, "case.urgent_tag") if case.urgent else "",
        kind=say(lang, f"kind.{case.kind}"),
        category=cat.name if cat else case.category,
        text=case.text,
        place=place,
        sent=sent_line(attachments_of(session, case) if sent is None else sent, lang) or _NO_LINE,
        contact=contact or _NO_LINE,
        state=say(lang, f"state.{case.state}"),
        ack_due=when(lang, case.ack_due, community.timezone),
        reply_due=when(lang, case.reply_due, community.timezone),
        resolve_due=when(lang, case.resolve_due, community.timezone),
    )
    return "\n".join(line for line in card.split("\n") if line.strip() != _NO_LINE)


def card_media(sent: Sequence[t.Attachment]) -> list[int]:
    """The ids of the kept photos and voice messages among `sent` that go with a case's card,
    oldest first, at most MAX_CARD_MEDIA (a chat flooded with them buries the card)."""
    ids = (media.id_in(a.ref) for a in sent if a.kind in ("photo", "voice"))
    return [i for i in ids if i is not None][:MAX_CARD_MEDIA]


def tell_card(session: Session, case: t.Case, person: t.Person, key: str, now: dt.datetime, *,
              with_contact: bool = True, with_media: bool = True, buttons: bool = True,
              dedupe_key: str | None = None, sent: Sequence[t.Attachment] | None = None,
              **values: MessageValue) -> None:
    """Tell a staff member `key` with the case's card in their language: with the resident's
    contact, the kept photos and voice messages, and the action buttons for those who handle
    it; an informed copy (`with_contact`, `with_media` and `buttons` False) is for reading only.
    `sent` is the case's attachments when the caller has them (a case being opened)."""
    sent = attachments_of(session, case) if sent is None else sent
    tell(session, now, key, person=person, case=case,
         buttons=staff_buttons(case) if buttons else (), dedupe_key=dedupe_key,
         card=Localised(lambda lang: case_card(session, case, lang, with_contact=with_contact, sent=sent)),
         media=card_media(sent) if with_media else (), **values)


def _tell_first_responder(session: Session, case: t.Case, actor: t.Person | None, now: dt.datetime,
                          step: str, note: str = "") -> None:
    """首问负责: the first responder hears of every later step taken by someone else."""
    first = _person(session, case.first_responder_id)
    if first is None or (actor is not None and actor.id == first.id):
        return
    tell(
        session,
        now,
        "case.step_for_first_responder",
        person=first,
        case=case,
        number=case.number,
        step=phrase(f"step.{step}"),
        actor=actor.name if actor else phrase("actor.resident"),
        note=note,
    )


def _tell_resident(session: Session, case: t.Case, key: str, now: dt.datetime,
                   buttons: Sequence[Sequence[tuple[str, str]]] = (), **values: MessageValue) -> None:
    tell(session, now, key, resident=_resident(session, case), case=case, prefer=case.channel,
         buttons=buttons, number=case.number, **values)


# --------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class Opened:
    case: t.Case
    route: Route
    holder: t.Person
    post: t.Post
    deadlines: Deadlines


def open_case(
    session: Session,
    *,
    resident: t.Resident,
    kind: str,
    category: str,
    urgent: bool,
    text: str,
    lang: str,
    channel: str,
    now: dt.datetime,
    attachments: Iterable[Attachment] = (),
    proposal_id: int | None = None,
    post_code: str | None = None,
    building: t.Building | None = None,
) -> Opened:
    """Store a new case, route it, set its deadlines and queue its notices.

    `post_code` dispatches straight to a post (an adopted proposal's executing post);
    `building` is where the matter is when the resident confirmed it is not their own building.
    """
    community = directory.community(session, resident.community_id)
    calendar = directory.calendar_of(community)
    if building is None and resident.building_id:
        building = directory.building(session, resident.building_id)
    grid = directory.grid(session, building.grid_id) if building else None
    table = directory.routing_table(session, community)
    day = calendar.local_date(now)
    if post_code is not None:
        seat = table.posts[post_code]
        held = seat_holder(seat, day, table) or (seat.a, False)
        decided = Route(post=seat.code, holder=held[0], reason="direct", covering=held[1])
    else:
        decided = route(kind=kind, category=category, urgent=urgent, grid=grid.code if grid else None,
                        day=day, table=table)
    cat = directory.category(session, community.id or 0, category)
    limits = (
        TimeLimits(cat.acknowledge_hours, cat.reply_days, cat.resolve_days) if cat else FALLBACK_LIMITS
    )
    deadlines = compute_deadlines(
        now,
        limits,
        calendar,
        urgent=urgent,
        urgent_limits=UrgentLimits(
            community.urgent_ack_minutes, community.urgent_reply_minutes, community.urgent_resolve_hours
        ),
    )
    post = directory.post_by_code(session, community.id or 0, decided.post)
    holder = directory.person_by_code(session, decided.holder)
    case = t.inserted(
        session,
        t.Case,
        number=next_number(session, community, now),
        community_id=community.id or 0,
        kind=kind,
        category=category,
        urgent=urgent,
        text=text,
        lang=lang,
        channel=channel,
        resident_id=resident.id or 0,
        grid_id=grid.id if grid else None,
        building_id=building.id if building else None,
        state=CaseState.ASSIGNED,
        post_id=post.id,
        holder_id=holder.id,
        proposal_id=proposal_id,
        created_at=now,
        dispatched_at=now,
        ack_due=deadlines.acknowledge,
        reply_due=deadlines.reply,
        resolve_due=deadlines.resolve,
    )
    new_history(session, t.CaseEvent, case.id)
    transaction_memo(session).setdefault(_OPENED, []).append(kind)
    sent = [t.Attachment(case_id=case.id or 0, kind=att.kind, ref=att.ref, latitude=att.latitude,
                         longitude=att.longitude, created_at=now) for att in attachments]
    session.add_all(sent)
    record(session, case, "created", now, resident=resident, kind=kind, category=category,
           urgent=urgent, channel=channel)
    record(session, case, "assigned", now, post=post.code, holder=holder.code, reason=decided.reason,
           covering=decided.covering)
    tell_card(session, case, holder, "case.new_for_staff", now, sent=sent,
              covering=phrase("case.covering") if decided.covering else "")
    for code in decided.informed:
        person = directory.person_by_code(session, code)
        leader = code == decided.duty_leader
        # The duty leader acts on an urgent case and sees it whole; the others are informed.
        tell_card(session, case, person, "case.urgent_alert" if leader else "case.informed", now,
                  with_contact=leader, with_media=leader, buttons=False, sent=sent, holder=holder.name)
    return Opened(case=case, route=decided, holder=holder, post=post, deadlines=deadlines)


# --------------------------------------------------------------------------- staff actions


def _may_handle(session: Session, case: t.Case, person: t.Person) -> bool:
    if person.community_id != case.community_id:
        return False
    if person.id in (case.holder_id, case.first_responder_id):
        return True
    post = session.get(t.Post, case.post_id) if case.post_id else None
    if post is not None and person.id in (post.a_holder_id, post.b_holder_id):
        return True
    return person.has_role("director") or person.has_role("front_desk")


def _check_staff(session: Session, case: t.Case, person: t.Person) -> None:
    """Staff who may not handle a case do not learn it exists: the same "not found" as for a
    number that was never given (another community's case included)."""
    if not _may_handle(session, case, person):
        raise NotFound(what=case.number)


def acknowledge(session: Session, case: t.Case, person: t.Person, now: dt.datetime) -> t.Case:
    """Take the case up; the first to do so becomes its first responder (首问)."""
    _check_staff(session, case, person)
    if case.state not in WAITING_FOR_ACK:
        raise InvalidState(number=case.number, state=case.state)
    case.holder_id = person.id
    first = case.first_responder_id is None
    if first:
        case.first_responder_id = person.id
    if case.acknowledged_at is None:
        case.acknowledged_at = now
    case.state = CaseState.ACKNOWLEDGED
    record(session, case, "acknowledged", now, person=person, first_responder=first)
    lead = accountable(session, case)
    _tell_resident(session, case, "case.acknowledged", now, name=person.name,
                   post=_post_of_person(session, case, person), accountable=lead.name,
                   reply_due=moment(case.reply_due, _community(session, case).timezone))
    _tell_first_responder(session, case, person, now, "acknowledged")
    return case


def _auto_acknowledge(session: Session, case: t.Case, person: t.Person, now: dt.datetime) -> None:
    """Replying or resolving without pressing Acknowledge counts as acknowledging first."""
    if case.state in WAITING_FOR_ACK:
        acknowledge(session, case, person, now)


def reply(session: Session, case: t.Case, person: t.Person, text: str, now: dt.datetime) -> t.Case:
    """Answer the resident."""
    _check_staff(session, case, person)
    if case.state in (CaseState.RESOLVED, CaseState.CLOSED):
        raise InvalidState(number=case.number, state=case.state)
    _auto_acknowledge(session, case, person, now)
    case.state = CaseState.REPLIED
    if case.replied_at is None:
        case.replied_at = now
    record(session, case, "replied", now, person=person, note=text)
    _tell_resident(session, case, "case.replied", now, name=person.name, text=text)
    _tell_first_responder(session, case, person, now, "replied", text)
    return case


def transfer(session: Session, case: t.Case, person: t.Person, post_code: str, note: str,
             now: dt.datetime) -> t.Case:
    """Hand the case to another post; the first responder stays accountable, deadlines stay."""
    _check_staff(session, case, person)
    if case.state in (CaseState.RESOLVED, CaseState.CLOSED):
        raise InvalidState(number=case.number, state=case.state)
    target = directory.post_by_code(session, case.community_id, post_code)
    if target.id == case.post_id and case.state != CaseState.RETURNED:
        raise InvalidState(number=case.number, state=case.state)
    community = _community(session, case)
    table = directory.routing_table(session, community)
    day = directory.calendar_of(community).local_date(now)
    seat = table.posts[target.code]
    holder_code, covering = seat_holder(seat, day, table) or (seat.a, False)
    holder = directory.person_by_code(session, holder_code)
    old_post = session.get(t.Post, case.post_id) if case.post_id else None
    case.post_id = target.id
    case.holder_id = holder.id
    case.state = CaseState.TRANSFERRED
    record(session, case, "transferred", now, person=person, note=note,
           from_post=old_post.code if old_post else None, to_post=target.code, holder=holder.code,
           covering=covering)
    tell_card(session, case, holder, "case.transferred_to_you", now, by=person.name, note=note,
              covering=phrase("case.covering") if covering else "")
    lead = accountable(session, case)
    _tell_resident(session, case, "case.transferred", now, post=target.name, name=holder.name,
                   accountable=lead.name)
    _tell_first_responder(session, case, person, now, "transferred", f"{target.name} {note}".strip())
    return case


# The kinds a case can be reclassified to: a proposal goes to the council, not to a post.
CASE_KINDS = ("service_request", "complaint")


def reclassify(session: Session, case: t.Case, person: t.Person, kind: str, category: str,
               now: dt.datetime) -> t.Case:
    """Correct the reading of the resident's message (kind and category) and, when the new
    reading belongs to another post, re-route it through the intake's routing as a transfer:
    deadlines unchanged, first responder kept, the resident told. The "reclassified" event
    (from/to kind and category) is what `handlers/cases/corrections.py` learns from."""
    _check_staff(session, case, person)
    if case.state in (CaseState.RESOLVED, CaseState.CLOSED):
        raise InvalidState(number=case.number, state=case.state)
    if kind not in CASE_KINDS:
        raise BadInput(f"unknown kind {kind!r}", reason="usage")
    old_cat = directory.category(session, case.community_id, case.category)
    new_cat = directory.category(session, case.community_id, category)
    if new_cat is None:
        raise BadInput(f"unknown category {category!r}", reason="usage")
    if (kind, category) == (case.kind, case.category):
        raise InvalidState(number=case.number, state=case.state)
    case_before = case.category
    record(session, case, "reclassified", now, person=person, from_kind=case.kind,
           from_category=case.category, to_kind=kind, to_category=category)
    case.kind, case.category = kind, category
    community = _community(session, case)
    grid = session.get(t.Grid, case.grid_id) if case.grid_id else None
    decided = route(kind=kind, category=category, urgent=case.urgent, grid=grid.code if grid else None,
                    day=directory.calendar_of(community).local_date(now),
                    table=directory.routing_table(session, community))
    post = session.get(t.Post, case.post_id) if case.post_id else None
    if post is None or decided.post != post.code:
        # The note names the categories as the registry does, in no one language.
        note = f"{old_cat.name if old_cat else case_before} → {new_cat.name}"
        transfer(session, case, person, decided.post, note, now)
    return case


def return_case(session: Session, case: t.Case, person: t.Person, reason: str, now: dt.datetime) -> t.Case:
    """退单: give back a case that is not ours; the front desk re-routes it, the clock keeps running."""
    _check_staff(session, case, person)
    if not reason.strip():
        raise InvalidState(number=case.number, state=case.state)
    if case.state in (CaseState.RESOLVED, CaseState.CLOSED, CaseState.RETURNED):
        raise InvalidState(number=case.number, state=case.state)
    _send_to_front_desk(session, case, now, person=person, reason=reason)
    return case


def _send_to_front_desk(session: Session, case: t.Case, now: dt.datetime, *, person: t.Person | None,
                        reason: str) -> None:
    community = _community(session, case)
    table = directory.routing_table(session, community)
    seat = table.post_of_kind("front_desk")
    day = directory.calendar_of(community).local_date(now)
    holder = directory.person_by_code(session, (seat_holder(seat, day, table) or (seat.a, False))[0])
    old_post = session.get(t.Post, case.post_id) if case.post_id else None
    case.post_id = directory.post_by_code(session, case.community_id, seat.code).id
    case.holder_id = holder.id
    case.state = CaseState.RETURNED
    record(session, case, "returned", now, person=person, note=reason,
           from_post=old_post.code if old_post else None, to_post=seat.code, holder=holder.code)
    tell_card(session, case, holder, "case.returned_to_front_desk", now,
              by=person.name if person else phrase("actor.system"), note=reason)


def return_orphans_to_front_desk(session: Session, community: t.Community, post_ids: set[int],
                                 now: dt.datetime) -> list[str]:
    """Open cases of posts that left the registry go back to the front desk."""
    moved = []
    for case in session.scalars(
        select(t.Case).where(col(t.Case.post_id).in_(post_ids), col(t.Case.state).in_(OPEN_STATES))
    ):
        _send_to_front_desk(session, case, now, person=None, reason="post removed from the registry")
        moved.append(case.number)
    return moved


def resolve(session: Session, case: t.Case, person: t.Person, note: str, now: dt.datetime) -> t.Case:
    """Mark the matter done and ask the resident to rate it."""
    _check_staff(session, case, person)
    if case.state in (CaseState.RESOLVED, CaseState.CLOSED):
        raise InvalidState(number=case.number, state=case.state)
    _auto_acknowledge(session, case, person, now)
    case.state = CaseState.RESOLVED
    case.resolved_at = now
    record(session, case, "resolved", now, person=person, note=note)
    told_by_opener = False
    origin = opened_by(case)
    if origin is not None:
        hook = _RESOLVED_HOOKS.get(origin)
        if hook is None:  # a process that resolves such cases loads the workflow that opened them
            raise RuntimeError(f"no workflow hears of resolved cases opened by a {origin}")
        told_by_opener = hook(session, case, person, note, now)
    if not told_by_opener:  # else the proposer was told and asked by the council's notice
        _tell_resident(session, case, "case.resolved", now, buttons=rating_buttons(case),
                       name=person.name, note=note)
    _tell_first_responder(session, case, person, now, "resolved", note)
    return case


# --------------------------------------------------------------------------- resident actions


def _check_owner(case: t.Case, resident: t.Resident) -> None:
    if case.resident_id != resident.id:
        raise NotFound(what=case.number)


def rate(session: Session, case: t.Case, resident: t.Resident, rating: str, comment: str,
         now: dt.datetime) -> t.Case:
    """满意 / 基本满意 close the case; 不满意 reopens it to the first responder."""
    _check_owner(case, resident)
    rating = RATINGS.get(rating, rating)
    if rating not in RATINGS.values():
        raise InvalidState(number=case.number, state=case.state)
    if case.state != CaseState.RESOLVED:
        raise InvalidState(number=case.number, state=case.state)
    _record_rating(session, case, resident, rating, comment, now)
    if rating == "unsatisfied":
        _reopen(session, case, resident, comment, now)
    else:
        close_rated(case, now)
    return case


def _record_rating(session: Session, case: t.Case, resident: t.Resident, rating: str, comment: str,
                   now: dt.datetime, **data: Any) -> None:
    """The resident's rating on the case, its "rated" event (what 满意率 counts) and the notice
    to the accountable staff member."""
    case.rating = rating
    case.rating_comment = comment
    record(session, case, "rated", now, resident=resident, note=comment, rating=rating, **data)
    holder = accountable(session, case)
    tell(session, now, "case.rated_for_staff", person=holder, case=case, number=case.number,
         rating=phrase(f"rating.{rating}"), comment=comment)


def close_rated(case: t.Case, now: dt.datetime) -> None:
    case.state = CaseState.CLOSED
    case.closed_at = now


def rate_by_evaluation(session: Session, case: t.Case, resident: t.Resident, rating: str,
                       comment: str, now: dt.datetime, *, proposal: str) -> None:
    """The proposer's evaluation of a council decision's execution rates its execution case and
    closes it, whatever the rating: an unsatisfied evaluation goes to the council's evaluation
    meeting rather than reopening the case, and nothing is left to rate (满意率 counts it once)."""
    _check_owner(case, resident)
    if case.state != CaseState.RESOLVED:
        raise InvalidState(number=case.number, state=case.state)
    _record_rating(session, case, resident, rating, comment, now, proposal=proposal)
    close_rated(case, now)


def reopen(session: Session, case: t.Case, resident: t.Resident, reason: str, now: dt.datetime) -> t.Case:
    _check_owner(case, resident)
    if case.state not in (CaseState.RESOLVED, CaseState.CLOSED) or is_withdrawn(case):
        raise InvalidState(number=case.number, state=case.state)
    _reopen(session, case, resident, reason, now)
    return case


def _reopen(session: Session, case: t.Case, resident: t.Resident, reason: str, now: dt.datetime) -> None:
    """Back to the first responder with a fresh round of deadlines."""
    community = _community(session, case)
    cat = directory.category(session, case.community_id, case.category)
    limits = TimeLimits(cat.acknowledge_hours, cat.reply_days, cat.resolve_days) if cat else FALLBACK_LIMITS
    deadlines = compute_deadlines(now, limits, directory.calendar_of(community), urgent=case.urgent,
                                  urgent_limits=UrgentLimits(community.urgent_ack_minutes,
                                                             community.urgent_reply_minutes,
                                                             community.urgent_resolve_hours))
    holder = accountable(session, case)
    case.holder_id = holder.id
    case.state = CaseState.REOPENED
    case.reopen_count += 1
    case.closed_at = None
    case.ack_due, case.reply_due, case.resolve_due = deadlines.acknowledge, deadlines.reply, deadlines.resolve
    case.escalation_level = 0
    record(session, case, "reopened", now, resident=resident, note=reason, holder=holder.code)
    tell_card(session, case, holder, "case.reopened_for_staff", now, note=reason)
    _tell_resident(session, case, "case.reopened", now, name=holder.name,
                   reply_due=moment(case.reply_due, community.timezone))


def add_info(session: Session, case: t.Case, resident: t.Resident, text: str, now: dt.datetime,
             attachments: Iterable[Attachment] = ()) -> t.Case:
    _check_owner(case, resident)
    if case.state not in OPEN_STATES:
        raise InvalidState(number=case.number, state=case.state)
    for att in attachments:
        session.add(t.Attachment(case_id=case.id or 0, kind=att.kind, ref=att.ref,
                                 latitude=att.latitude, longitude=att.longitude, created_at=now))
    record(session, case, "info_added", now, resident=resident, note=text)
    holder = _person(session, case.holder_id)
    if holder is not None:
        tell(session, now, "case.info_added_for_staff", person=holder, case=case, number=case.number,
             text=text)
    return case


# --------------------------------------------------------------------------- withdrawal by the resident

# The reason a withdrawn case closed with, on its "withdrawn" event.
WITHDRAWN_REASON = "withdrawn_by_resident"


def closes_on_withdrawal(case: t.Case) -> bool:
    """Whether the resident's withdrawal closes the case: nobody has acknowledged it yet. An
    urgent case is not closed by it (someone may be in danger, and the duty leader was alerted),
    nor a council decision's execution case (the council decided it, not the proposer alone)."""
    return (case.state in WAITING_FOR_ACK and case.acknowledged_at is None and not case.urgent
            and case.proposal_id is None)


def is_withdrawn(case: t.Case) -> bool:
    """Closed without ever being resolved: only the resident's withdrawal closes a case so."""
    return case.state == CaseState.CLOSED and case.resolved_at is None


def withdrawn_column() -> Any:
    """`is_withdrawn` as an SQL expression."""
    return and_(col(t.Case.state) == CaseState.CLOSED, col(t.Case.resolved_at).is_(None))


def withdraw(session: Session, case: t.Case, resident: t.Resident, now: dt.datetime) -> bool:
    """The resident withdraws their case. Before anyone acknowledged it, it closes with the reason
    "withdrawn by the resident" and the holder is told (True). Once somebody has taken it up, the
    wish goes to the holder and the first responder as a note and the case stays open (False)."""
    _check_owner(case, resident)
    if case.state not in OPEN_STATES:
        raise InvalidState(number=case.number, state=case.state)
    closing = closes_on_withdrawal(case)
    if closing:
        case.state = CaseState.CLOSED
        case.closed_at = now
        record(session, case, "withdrawn", now, resident=resident, reason=WITHDRAWN_REASON)
    else:
        record(session, case, "withdrawal_asked", now, resident=resident)
    told = [p for p in (_person(session, case.holder_id), _person(session, case.first_responder_id))
            if p is not None]
    for person in {p.id: p for p in told}.values():
        tell(session, now, "case.withdrawn_for_staff" if closing else "case.withdrawal_asked_for_staff",
             person=person, case=case, number=case.number, text=_short(case.text))
    return closing


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- queries


def find(session: Session, ref: str | int) -> t.Case:
    """A case by id or number (case-insensitive). An id past the id columns' range, or digits
    that are not decimal (²), name no case: the database would fail on them (t.row_id)."""
    if isinstance(ref, int) or str(ref).isdigit():
        case = t.by_id(session, t.Case, ref)
    else:
        case = session.scalars(
            select(t.Case).where(col(t.Case.number) == str(ref).strip().upper())).first()
    if case is None:
        raise NotFound(what=str(ref))
    return case


def for_resident(session: Session, ref: str | int, resident: t.Resident) -> t.Case:
    """A resident's own case; somebody else's case does not exist for them."""
    case = find(session, ref)
    if case.resident_id != resident.id:
        raise NotFound(what=str(ref))  # word for word what an unknown `ref` gets
    return case


def for_staff(session: Session, ref: str | int, person: t.Person) -> t.Case:
    """A case the staff member may handle; any other case does not exist for them, exactly as
    a case that is not somebody's own does not exist for a resident."""
    case = find(session, ref)
    if not _may_handle(session, case, person):
        raise NotFound(what=str(ref))
    return case


def may_see(session: Session, case: t.Case, *, person: t.Person | None = None,
             resident: t.Resident | None = None) -> bool:
    """Whether a viewer may see the case and what was sent with it: staff who may handle it (as
    `for_staff`), or the resident who reported it."""
    if person is not None:
        return person.active and _may_handle(session, case, person)
    return resident is not None and case.resident_id == resident.id


def for_viewer(session: Session, ref: str | int, *, person: t.Person | None = None,
               resident: t.Resident | None = None) -> t.Case:
    """A case as `may_see` allows it; NotFound for anyone else (they do not learn it exists)."""
    case = find(session, ref)
    if not may_see(session, case, person=person, resident=resident):
        raise NotFound(what=str(ref))
    return case


def case_with_media(session: Session, media_id: int, *, person: t.Person | None = None,
                    resident: t.Resident | None = None) -> t.Case | None:
    """A case the viewer may see that carries the kept media `media_id`; None when there is none.
    The same bytes sent twice are stored once, so one media may belong to several cases."""
    ref = f"{media.REF_PREFIX}{media_id}"
    case_ids = session.scalars(
        select(col(t.Attachment.case_id)).where(col(t.Attachment.ref) == ref).distinct()).all()
    for case_id in case_ids:
        case = session.get(t.Case, case_id)
        if case is not None and may_see(session, case, person=person, resident=resident):
            return case
    return None


def of_resident(session: Session, resident: t.Resident, limit: int = 10) -> list[t.Case]:
    return list(
        session.scalars(
            select(t.Case)
            .where(col(t.Case.resident_id) == resident.id)
            .order_by(col(t.Case.created_at).desc(), col(t.Case.id).desc())
            .limit(limit)
        )
    )


def next_due(case: t.Case) -> dt.datetime:
    """The deadline the case is working towards now."""
    if case.state in WAITING_FOR_ACK:
        return case.ack_due
    if case.state == CaseState.ACKNOWLEDGED:
        return case.reply_due
    return case.resolve_due


def next_due_column() -> Any:
    """`next_due` as an SQL expression, for counting in the database."""
    return sql_case((col(t.Case.state).in_(list(WAITING_FOR_ACK)), col(t.Case.ack_due)),
                    (col(t.Case.state) == CaseState.ACKNOWLEDGED, col(t.Case.reply_due)),
                    else_=col(t.Case.resolve_due))


def due_passed(case: t.Case, now: dt.datetime) -> bool:
    """Whether an open case is past the deadline it is working towards."""
    return as_utc(next_due(case)) < now


def open_for_person(session: Session, person: t.Person) -> list[t.Case]:
    """Open cases a staff member holds or is first responder of, most pressing first."""
    rows = list(
        session.scalars(
            select(t.Case).where(
                col(t.Case.state).in_(OPEN_STATES),
                or_(col(t.Case.holder_id) == person.id,
                    col(t.Case.first_responder_id) == person.id),
            )
        )
    )
    return sorted(rows, key=lambda c: (not c.urgent, next_due(c), c.id))


def status_text(session: Session, case: t.Case, lang: str) -> str:
    community = _community(session, case)
    lead = accountable(session, case)
    holder = _person(session, case.holder_id)
    last = history(session, case)[-1]
    return say(
        lang,
        "case.status",
        number=case.number,
        state=say(lang, f"state.{case.state}"),
        accountable=lead.name,
        holder=holder.name if holder else "—",
        post=_post_name(session, case.post_id),
        due=_status_due_line(case, lang, community.timezone),
        last=say(lang, f"step.{last.action}"),
        last_at=when(lang, last.at, community.timezone),
    )


def _status_due_line(case: t.Case, lang: str, timezone: str) -> str:
    """The deadline an open case works towards; a finished case has none left, only its end."""
    if case.state in OPEN_STATES:
        return say(lang, "case.status_due", due=when(lang, next_due(case), timezone))
    if case.state == CaseState.RESOLVED and case.resolved_at is not None:
        return say(lang, "case.status_resolved", at=when(lang, case.resolved_at, timezone))
    ended = case.closed_at or case.resolved_at
    return say(lang, "case.status_closed", at=when(lang, ended, timezone)) if ended else ""
