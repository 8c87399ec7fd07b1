"""The deadline watch: reminders, AB escalation, director escalation, follow-up visits, digests.

件件有着落、项项有答复: every open case is watched until it is answered. An adopted proposal of
the residents' council is executed as an ordinary case (its `proposal_id` is set), so watching
cases watches adopted proposals too.

How due work is found. What must happen and when is stored as `DueAction` rows
(storage/scheduler.py), each under a UNIQUE key such as "escalate_ack:42:20261123T030000": the
kind, the case and the deadline it watches. They are *derived* from the case's own columns
(state, ack_due, reply_due, resolve_due, escalation_level, resolved_at, rating) and its history,
so the case desk (handlers/cases/lifecycle.py) needs no change: every change to a case appends a CaseEvent,
and the planner reads new events since its stored cursor (WatchCursor) and plans the due actions
of the cases they touch. A case whose deadline moved (reopened, escalated) gets new keys; the old
actions are checked again when they fall due and are skipped when the planner would no longer
plan them. Finding due work is then an index range scan on (state, due_at), however many cases are
open.

A restart does not re-plan every case. A case's plan is a function of the case (its columns and
events), the WatchPolicy, its community's working calendar, the holiday data of `chinesecalendar`
and `plan()` itself; every change to a case appends a CaseEvent, and the event cursor is stored,
so changes made while no scheduler ran are read like any others. A full pass over every watched
case is needed only when one of the other inputs changed (or on the very first start), and a
fingerprint of them names its cursor ("full:<sha256 prefix>"). The pass goes in chunks of
`PLAN_CHUNK` cases in case-id order, each chunk its own transaction that advances the cursor, so
a pass cut short by a crash resumes where it stopped, and the tick performs due work between
chunks: a restart delays escalations by one chunk, not by the whole pass.

Each action is performed in ONE transaction with its case event and its notices (outbox rows with
a dedupe key); see storage/scheduler.py for why that makes it happen exactly once across
processes and restarts.

Decisions:
- Reminder: at `lead` (default 25 %) of the window before the deadline, the window measured in
  working time on the community's calendar (so a reminder never falls at night or on a holiday),
  in wall time for urgent cases. The accountable person for the deadline is reminded: the holder;
  for reply and resolve also the first responder (首问) when someone else holds the case. Someone
  on leave is not reminded; the post's B holder is (else the director). A reminder is skipped once
  its deadline is met or has passed.
- Acknowledge overdue: the case moves one step up its chain: normal cases B holder → director;
  urgent cases B holder → duty leader → director (settings). A step whose person is on leave, is
  missing or already holds the case is passed over. The new holder gets a fresh acknowledge window
  from now (urgent: minutes, at any hour; normal: working hours); reply and resolve deadlines never
  move, so escalation cannot be used to buy time.
- Reply or resolve overdue: the case goes to the director (the first responder's superior); the
  first responder stays accountable. When the director already holds it there is no one above.
- Holder unreachable (`escalate_unreachable`): a case card that no channel can deliver to the
  holder (the last channel refused them, and only the web inbox, which waits to be looked at, is
  left) moves the case up the same chain at once, as the acknowledge deadline would, while that
  person still holds it and it waits for acknowledgement; the reason says the holder could not be
  reached.
- Every escalation is a CaseEvent "escalated" with {from, to, reason, step, level}; the new holder
  gets the case card with its buttons, the previous holder and the first responder are told, and
  the resident is told that the case was escalated and who holds it now.
- 回访: one follow-up message to the resident `follow_up_hours` after resolution without a rating,
  at the next working moment, with the rating buttons; 不满意 reopens the case to the same first
  responder (handlers/cases/lifecycle.py, rate). Still unrated `close_unrated_hours` after the follow-up, the
  case is closed (CaseState.closed: "closed after the follow-up without a rating").
- Digest: on working days from `digest_time` local time, once per person and day (unique key),
  to every staff member with open cases who is not on leave; directors also get the community's
  overdue list and the notices that went dead in the last day.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.cases import lifecycle
from handlers.cases.offers import posts_held
from handlers.deadlines import WorkingCalendar, is_working_day
from handlers.errors import NotFound
from handlers.figures import tally
from handlers.notify import Localised, MessageValue, language_of, moment, phrase, tell
from handlers.registry import directory
from handlers.replies import say, when
from handlers.routing import RoutingTable, duty_leader, is_absent, seat_holder
from storage import scheduler
from storage import tables as t
from storage.clock import as_utc
from storage.scheduler import Planned
from storage.tables import OPEN_STATES, CaseState, DueActionState, OutboxState
from storage.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

DEADLINES = ("ack", "reply", "resolve")
WAITING_FOR_ACK = frozenset(lifecycle.WAITING_FOR_ACK)
OPEN = frozenset(OPEN_STATES)
PLAN_CURSOR = "plan"
# Events re-read behind the cursor on every pass: a transaction that took an event id earlier but
# committed after a later one is still seen (planning is idempotent, so re-reading costs little).
CURSOR_OVERLAP = 500
PLAN_CHUNK = 1000
# Bump when plan() (or what it reads) changes what it plans: the next start re-plans every case.
PLANNER_VERSION = 2
FULL_CURSOR_PREFIX = "full:"
# The full pass's cursor value once every watched case has been planned (WatchCursor.last_id is
# a 32-bit integer).
FULL_DONE = 2**31 - 1
WATCHED_EVENTS = ("reopened", "escalated", "acknowledged", "replied", "followed_up")
# Escalations that hand the new holder a fresh acknowledge window.
ACK_RESTARTING = ("ack_overdue", "holder_unreachable")
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class WatchPolicy:
    """The watch's settings (bot/settings.py WATCH_*)."""

    reminder_lead: float = 0.25
    follow_up_hours: float = 48.0
    close_unrated_hours: float = 72.0
    digest_time: dt.time = dt.time(8, 30)
    chain: tuple[str, ...] = ("b", "director")
    urgent_chain: tuple[str, ...] = ("b", "duty_leader", "director")

    def chain_for(self, urgent: bool) -> tuple[str, ...]:
        return self.urgent_chain if urgent else self.chain


# --------------------------------------------------------------------------- pure: time


def _local_bounds(calendar: WorkingCalendar, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.combine(day, calendar.start), dt.datetime.combine(day, calendar.end)


def working_hours_between(calendar: WorkingCalendar, start: dt.datetime, end: dt.datetime) -> float:
    """Working time between two aware UTC moments, in hours."""
    if end <= start:
        return 0.0
    a, b = calendar.to_local(start), calendar.to_local(end)
    total = dt.timedelta()
    day = a.date()
    while day <= b.date():
        if is_working_day(day):
            lo, hi = _local_bounds(calendar, day)
            lo, hi = max(lo, a), min(hi, b)
            if hi > lo:
                total += hi - lo
        day += dt.timedelta(days=1)
    return total.total_seconds() / 3600


def minus_working_hours(calendar: WorkingCalendar, end: dt.datetime, hours: float) -> dt.datetime:
    """The moment `hours` of working time before `end` (aware UTC in, aware UTC out)."""
    remaining = dt.timedelta(hours=hours)
    cursor = calendar.to_local(end)
    while True:
        day = cursor.date()
        if is_working_day(day):
            lo, hi = _local_bounds(calendar, day)
            top = min(cursor, hi)
            if top > lo:
                if remaining <= top - lo:
                    return calendar.to_utc(top - remaining)
                remaining -= top - lo
        cursor = dt.datetime.combine(day - dt.timedelta(days=1), dt.time.max)


def reminder_at(calendar: WorkingCalendar, start: dt.datetime, due: dt.datetime, lead: float,
                urgent: bool) -> dt.datetime | None:
    """When to remind before `due`: `lead` of the window left; None when there is no window."""
    if due <= start:
        return None
    if urgent:
        return due - (due - start) * lead
    hours = working_hours_between(calendar, start, due)
    if hours <= 0:
        return None
    at = minus_working_hours(calendar, due, hours * lead)
    return at if start < at < due else None


# --------------------------------------------------------------------------- pure: planning


@dataclass(frozen=True)
class CaseView:
    """What the watch needs to know about one case."""

    id: int
    urgent: bool
    state: str
    ack_due: dt.datetime
    reply_due: dt.datetime
    resolve_due: dt.datetime
    resolved_at: dt.datetime | None
    rating: str | None
    ack_start: dt.datetime  # when the current acknowledge window began
    round_start: dt.datetime  # when the current round began (dispatch or the last reopening)
    replied_in_round: bool
    followed_up_at: dt.datetime | None
    # Taken up in this round: the acknowledge deadline was met (or already escalated and then
    # met), so a later transfer or return waits on the reply and resolve deadlines only.
    acknowledged_in_round: bool = False


@dataclass(frozen=True)
class Due:
    kind: str
    ref_at: dt.datetime  # the deadline (or resolution) this action watches
    due_at: dt.datetime


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")


def due_key(kind: str, case_id: int, ref_at: dt.datetime) -> str:
    return f"{kind}:{case_id}:{_stamp(ref_at)}"


def plan(view: CaseView, policy: WatchPolicy, calendar: WorkingCalendar) -> list[Due]:
    """Everything the watch should do about a case as it stands now."""
    out: list[Due] = []

    def watch(deadline: str, due: dt.datetime, start: dt.datetime) -> None:
        remind = reminder_at(calendar, start, due, policy.reminder_lead, view.urgent)
        if remind is not None:
            out.append(Due(f"remind_{deadline}", due, remind))
        out.append(Due(f"escalate_{deadline}", due, due))

    if view.state in OPEN:
        if view.state in WAITING_FOR_ACK and not view.acknowledged_in_round:
            watch("ack", view.ack_due, view.ack_start)
        if view.state != CaseState.REPLIED and not view.replied_in_round:
            watch("reply", view.reply_due, view.round_start)
        watch("resolve", view.resolve_due, view.round_start)
    elif view.state == CaseState.RESOLVED and view.rating is None and view.resolved_at is not None:
        if view.followed_up_at is None:
            at = calendar.next_working_moment(
                calendar.to_local(view.resolved_at + dt.timedelta(hours=policy.follow_up_hours)))
            out.append(Due("follow_up", view.resolved_at, calendar.to_utc(at)))
        else:
            at = calendar.next_working_moment(
                calendar.to_local(view.followed_up_at + dt.timedelta(hours=policy.close_unrated_hours)))
            out.append(Due("close_unrated", view.resolved_at, calendar.to_utc(at)))
    return out


def still_due(view: CaseView, kind: str, ref_at: dt.datetime, now: dt.datetime, policy: WatchPolicy,
              calendar: WorkingCalendar) -> bool:
    """Whether a recorded action is still wanted: the planner would still plan it, and a reminder
    still comes before its deadline."""
    if kind.startswith("remind_") and now >= ref_at:
        return False
    return any(d.kind == kind and d.ref_at == ref_at for d in plan(view, policy, calendar))


# --------------------------------------------------------------------------- reading cases


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else as_utc(moment)


def _view(case: t.Case, events: Sequence[tuple[int, str, dt.datetime, dict[str, object]]]) -> CaseView:
    """The case with what its history says about the current round."""
    reopen_seq, round_start = 0, _aware(case.dispatched_at)
    assert round_start is not None
    for seq, action, at, _data in events:
        if action == "reopened" and seq > reopen_seq:
            reopen_seq, round_start = seq, max(round_start, _aware(at) or round_start)
    ack_start, replied, acknowledged, followed = round_start, False, False, None
    resolved_at = _aware(case.resolved_at)
    for seq, action, at, data in events:
        at = _aware(at) or at
        if seq <= reopen_seq:
            continue
        if action == "escalated" and data.get("reason") in ACK_RESTARTING:
            ack_start = max(ack_start, at)
        elif action == "replied":
            replied = True
        elif action == "acknowledged":
            acknowledged = True
        elif action == "followed_up" and resolved_at is not None and at >= resolved_at:
            followed = at if followed is None else max(followed, at)
    return CaseView(
        id=case.id or 0,
        urgent=case.urgent,
        state=case.state,
        ack_due=_aware(case.ack_due) or case.ack_due,
        reply_due=_aware(case.reply_due) or case.reply_due,
        resolve_due=_aware(case.resolve_due) or case.resolve_due,
        resolved_at=resolved_at,
        rating=case.rating,
        ack_start=ack_start,
        round_start=round_start,
        replied_in_round=replied,
        followed_up_at=followed,
        acknowledged_in_round=acknowledged,
    )


def _events_of(session: Session, case_ids: Sequence[int]
               ) -> dict[int, list[tuple[int, str, dt.datetime, dict[str, object]]]]:
    found: dict[int, list[tuple[int, str, dt.datetime, dict[str, object]]]] = defaultdict(list)
    if not case_ids:
        return found
    rows = session.execute(
        select(col(t.CaseEvent.case_id), col(t.CaseEvent.seq), col(t.CaseEvent.action),
               col(t.CaseEvent.at), col(t.CaseEvent.data))
        .where(col(t.CaseEvent.case_id).in_(list(case_ids)),
               col(t.CaseEvent.action).in_(WATCHED_EVENTS))
    )
    for case_id, seq, action, at, data in rows:
        found[case_id].append((seq, action, at, data or {}))
    return found


class _Calendars:
    """Working calendars by community, read once per pass."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._by_id: dict[int, WorkingCalendar] = {}

    def __call__(self, community_id: int) -> WorkingCalendar:
        if community_id not in self._by_id:
            self._by_id[community_id] = directory.calendar_of(directory.community(self.session, community_id))
        return self._by_id[community_id]


def view_of(session: Session, case: t.Case) -> CaseView:
    return _view(case, _events_of(session, [case.id or 0]).get(case.id or 0, []))


def _plan_cases(session: Session, case_ids: Sequence[int], now: dt.datetime, policy: WatchPolicy,
                calendars: _Calendars) -> int:
    offered = 0
    ids = sorted(set(case_ids))
    for start in range(0, len(ids), PLAN_CHUNK):
        chunk = ids[start : start + PLAN_CHUNK]
        found = list(session.scalars(select(t.Case).where(col(t.Case.id).in_(chunk))))
        events = _events_of(session, chunk)
        planned = []
        for case in found:
            view = _view(case, events.get(case.id or 0, []))
            for due in plan(view, policy, calendars(case.community_id)):
                planned.append(Planned(key=due_key(due.kind, view.id, due.ref_at), kind=due.kind,
                                       due_at=due.due_at, case_id=view.id, ref_at=due.ref_at))
        offered += scheduler.record(session, planned, now)
    return offered


def plan_changes(engine: Engine, now: dt.datetime, policy: WatchPolicy) -> int:
    """Plan the due actions of the cases changed since the last pass."""
    with UnitOfWork(engine) as uow:
        session = uow.session
        if not scheduler.try_planner_lock(session):
            return 0
        last = scheduler.cursor(session, PLAN_CURSOR)
        top = session.scalar(
            select(col(t.CaseEvent.id)).order_by(col(t.CaseEvent.id).desc()).limit(1)) or 0
        case_ids = list(session.scalars(
            select(col(t.CaseEvent.case_id))
            .where(col(t.CaseEvent.id) > max(0, last - CURSOR_OVERLAP), col(t.CaseEvent.id) <= top)
            .distinct()
        ))
        offered = _plan_cases(session, [i for i in case_ids if i is not None], now, policy, _Calendars(session))
        if top > last:
            scheduler.advance(session, PLAN_CURSOR, top, now)
        uow.commit()
        return offered


@functools.cache
def _holiday_data_version() -> str:
    # The version this process imported: an upgrade on disk takes effect at the next start.
    return importlib.metadata.version("chinesecalendar")


def full_cursor_name(session: Session, policy: WatchPolicy) -> str:
    """The cursor of the full pass for what plans depend on besides the case itself.

    A different policy, working calendar, holiday data or planner version gives a different name,
    so a fresh pass starts from the first case.
    """
    calendars = [(c.id, c.timezone, str(c.work_start), str(c.work_end))
                 for c in session.scalars(select(t.Community).order_by(col(t.Community.id)))]
    inputs = (PLANNER_VERSION, policy, calendars, _holiday_data_version())
    digest = hashlib.sha256(repr(inputs).encode()).hexdigest()
    return FULL_CURSOR_PREFIX + digest[:27]  # WatchCursor.name holds 32 characters


def plan_full_chunk(engine: Engine, now: dt.datetime, policy: WatchPolicy) -> tuple[int, bool]:
    """Plan the next `PLAN_CHUNK` watched cases of the full pass, if one is pending.

    Returns (due actions offered, whether more of the pass is left). While another process holds
    the planner lock this returns (0, False): that process is planning, and the caller goes on with
    its due work and tries again on a later tick.
    """
    with UnitOfWork(engine) as uow:
        session = uow.session
        if not scheduler.try_planner_lock(session):
            return 0, False
        name = full_cursor_name(session, policy)
        last = scheduler.cursor(session, name)
        if last >= FULL_DONE:
            return 0, False
        case_ids: list[int] = list(session.scalars(
            select(col(t.Case.id))
            .where(col(t.Case.id) > last,
                   or_(col(t.Case.state).in_(list(OPEN)),
                       (col(t.Case.state) == CaseState.RESOLVED) & col(t.Case.rating).is_(None)))
            .order_by(col(t.Case.id))
            .limit(PLAN_CHUNK)
        ))
        offered = _plan_cases(session, case_ids, now, policy, _Calendars(session))
        more = len(case_ids) >= PLAN_CHUNK
        if more:
            scheduler.advance(session, name, case_ids[-1], now)
        else:
            scheduler.advance(session, name, FULL_DONE, now)
            # Passes of earlier policies, calendars or planner versions will never be needed again.
            session.execute(delete(t.WatchCursor).where(
                col(t.WatchCursor.name).startswith(FULL_CURSOR_PREFIX),
                col(t.WatchCursor.name) != name))
        uow.commit()
        return offered, more


# --------------------------------------------------------------------------- who


def _seat_person(session: Session, table: RoutingTable, post_code: str, day: dt.date) -> t.Person | None:
    seat = table.posts.get(post_code)
    if seat is None:
        return None
    held = seat_holder(seat, day, table)
    return directory.person_by_code(session, held[0]) if held else None


def director_of(session: Session, table: RoutingTable, day: dt.date) -> t.Person | None:
    """The holder of the director post that day (A unless on leave, else B)."""
    try:
        seat = table.post_of_kind("director")
    except LookupError:
        return None
    return _seat_person(session, table, seat.code, day)


def _post(session: Session, case: t.Case) -> t.Post | None:
    return session.get(t.Post, case.post_id) if case.post_id else None


def step_person(session: Session, case: t.Case, step: str, table: RoutingTable, day: dt.date
                ) -> t.Person | None:
    """Who a step of the escalation chain names today, if they are at work."""
    code: str | None = None
    if step == "b":
        post = _post(session, case)
        seat = table.posts.get(post.code) if post else None
        code = seat.b if seat else None
    elif step == "duty_leader":
        code = duty_leader(day, table)
    elif step == "director":
        person = director_of(session, table, day)
        code = person.code if person else None
    if code is None or is_absent(code, day, table):
        return None
    return directory.person_by_code(session, code)


def _present(person: t.Person | None, table: RoutingTable, day: dt.date) -> bool:
    return person is not None and person.active and not is_absent(person.code, day, table)


# --------------------------------------------------------------------------- performing


@dataclass
class _Context:
    session: Session
    case: t.Case
    action: t.DueAction | None
    now: dt.datetime
    policy: WatchPolicy
    community: t.Community
    calendar: WorkingCalendar
    table: RoutingTable
    day: dt.date
    # What the notices' dedupe keys are unique for when no due action is (escalate_unreachable).
    origin: str = ""

    def dedupe(self, role: str, who: int | None) -> str:
        origin = self.origin or f"due:{self.action.id if self.action else None}"
        return f"{origin}:{role}:{who}"


def _card_to(ctx: _Context, person: t.Person, key: str, role: str, *, with_media: bool = True,
             **values: MessageValue) -> None:
    lifecycle.tell_card(ctx.session, ctx.case, person, key, ctx.now, with_media=with_media,
                    dedupe_key=ctx.dedupe(role, person.id), **values)


def _due(ctx: _Context, at: dt.datetime) -> Localised:
    return moment(at, ctx.community.timezone)


def _remind(ctx: _Context, deadline: str) -> tuple[DueActionState, str]:
    session, case = ctx.session, ctx.case
    due = getattr(case, f"{deadline}_due")
    holder = session.get(t.Person, case.holder_id) if case.holder_id else None
    main = holder
    covering = False
    if not _present(holder, ctx.table, ctx.day):
        main = step_person(session, case, "b", ctx.table, ctx.day)
        if main is None or (holder is not None and main.id == holder.id):
            main = director_of(session, ctx.table, ctx.day)
        covering = True
    sent: list[str] = []
    if main is not None:
        # The holder has the photos and recordings from their first card; someone covering has not.
        _card_to(ctx, main, "watch.remind", "main", with_media=covering, number=case.number,
                 what=phrase(f"watch.what.{deadline}"), due=_due(ctx, due),
                 covering=phrase("watch.covering") if covering else "")
        sent.append(main.code)
    first = session.get(t.Person, case.first_responder_id) if case.first_responder_id else None
    if (deadline != "ack" and first is not None and (main is None or first.id != main.id)
            and _present(first, ctx.table, ctx.day)):
        tell(session, ctx.now, "watch.remind_first_responder", person=first, case=case,
             dedupe_key=ctx.dedupe("first", first.id), number=case.number,
             what=phrase(f"watch.what.{deadline}"), due=_due(ctx, due),
             holder=holder.name if holder else "—")
        sent.append(first.code)
    if not sent:
        return DueActionState.SKIPPED, "nobody at work to remind"
    lifecycle.record(session, case, "reminded", ctx.now, deadline=deadline, due=due.isoformat(), to=sent)
    return DueActionState.DONE, "reminded " + ",".join(sent)


def _move(ctx: _Context, to: t.Person, reason: str, step: str, level: int) -> str:
    """Hand the case to `to` as an escalation, and tell everyone concerned."""
    session, case = ctx.session, ctx.case
    previous = session.get(t.Person, case.holder_id) if case.holder_id else None
    case.holder_id = to.id
    case.escalation_level = level
    lifecycle.record(session, case, "escalated", ctx.now, person=None, resident=None,
                 note=f"{previous.name if previous else '—'} → {to.name}",
                 reason=reason, step=step, level=level,
                 **{"from": previous.code if previous else None, "to": to.code})
    late = {"ack_overdue": "ack", "reply_overdue": "reply", "resolve_overdue": "resolve"}.get(reason)
    _card_to(ctx, to, "watch.escalated_to_you", "to", number=case.number,
             reason=phrase(f"watch.reason.{reason}"),
             previous=previous.name if previous else "—")
    if previous is not None and previous.id != to.id:
        tell(session, ctx.now, "watch.escalated_away", person=previous, case=case,
             dedupe_key=ctx.dedupe("from", previous.id), number=case.number,
             reason=phrase(f"watch.reason.{reason}"), name=to.name)
    first = session.get(t.Person, case.first_responder_id) if case.first_responder_id else None
    if first is not None and first.id not in (to.id, previous.id if previous else None):
        tell(session, ctx.now, "watch.escalated_for_first_responder", person=first, case=case,
             dedupe_key=ctx.dedupe("first", first.id), number=case.number,
             reason=phrase(f"watch.reason.{reason}"), name=to.name)
    resident = session.get(t.Resident, case.resident_id)
    assert resident is not None
    # The resident hears which deadline was missed (the reason's own), and who holds the case
    # now by their own post, or as covering the post the case reached them through.
    # A holder nobody could reach has a notice of its own, which says so.
    tell(session, ctx.now, "watch.escalated_for_resident" if late else f"watch.{reason}_for_resident",
         resident=resident, case=case, prefer=case.channel,
         dedupe_key=ctx.dedupe("resident", resident.id), number=case.number,
         what=phrase(f"watch.what.{late}") if late else "", holder=_holder_as_named(ctx, to, step),
         accountable=phrase("watch.accountable", name=first.name) if first is not None else "")
    return f"{reason}: {previous.code if previous else '-'} -> {to.code} ({step})"


def _holder_as_named(ctx: _Context, to: t.Person, step: str) -> Localised:
    """The new holder with their post: the post the case reached them through when it is their
    own (A), else their own post, with "covering for X" when they hold X, the post the case
    reached them through, as its B holder."""
    session = ctx.session
    via: t.Post | None = None
    if step == "b":
        via = _post(session, ctx.case)
    elif step == "director":
        try:
            seat = ctx.table.post_of_kind("director")
            via = directory.post_by_code(session, ctx.case.community_id, seat.code)
        except (LookupError, NotFound):
            via = None
    if via is not None and via.a_holder_id == to.id:
        return phrase("watch.holder", name=to.name, post=via.name)
    own = posts_held(session, to).own
    own_name = own[0].name if own else ""
    if via is not None and via.b_holder_id == to.id:
        if own_name:
            return phrase("watch.holder_covering", name=to.name, own=own_name, post=via.name)
        return phrase("watch.holder_covering_only", name=to.name, post=via.name)
    return phrase("watch.holder", name=to.name, post=own_name) if own_name else phrase(
        "watch.holder_no_post", name=to.name)


def _ack_window_end(ctx: _Context) -> dt.datetime:
    """A fresh acknowledge window for the new holder, from now."""
    if ctx.case.urgent:
        return ctx.now + dt.timedelta(minutes=ctx.community.urgent_ack_minutes)
    cat = directory.category(ctx.session, ctx.case.community_id, ctx.case.category)
    hours = cat.acknowledge_hours if cat else lifecycle.FALLBACK_LIMITS.acknowledge_hours
    return ctx.calendar.add_working_hours(ctx.now, hours)


def _escalate_ack(ctx: _Context, reason: str = "ack_overdue") -> tuple[DueActionState, str]:
    chain = ctx.policy.chain_for(ctx.case.urgent)
    for index in range(ctx.case.escalation_level, len(chain)):
        person = step_person(ctx.session, ctx.case, chain[index], ctx.table, ctx.day)
        if person is not None and person.id != ctx.case.holder_id:
            ctx.case.ack_due = _ack_window_end(ctx)
            return DueActionState.DONE, _move(ctx, person, reason, chain[index], index + 1)
    return DueActionState.SKIPPED, "no one above in the chain"


def escalate_unreachable(session: Session, case_id: int, person_id: int, now: dt.datetime,
                         policy: WatchPolicy, *, origin: str) -> str | None:
    """A case card could reach its holder on no channel: the case goes up its chain at once, as
    at the acknowledge deadline (the post's B holder first), with the reason
    "holder_unreachable", in the caller's transaction. Only while `person_id` still holds the
    case and it waits for acknowledgement (a second failed card of the same case finds it moved
    already). `origin` names the failed notice (the notices' dedupe keys). Returns what was done,
    or None when nothing was."""
    case = session.scalars(
        select(t.Case).where(col(t.Case.id) == case_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if case is None or case.holder_id != person_id or case.state not in WAITING_FOR_ACK:
        return None
    community = directory.community(session, case.community_id)
    calendar = directory.calendar_of(community)
    ctx = _Context(session, case, None, now, policy, community, calendar,
                   directory.routing_table(session, community), calendar.local_date(now), origin=origin)
    state, outcome = _escalate_ack(ctx, "holder_unreachable")
    return outcome if state == DueActionState.DONE else None


def _escalate_late(ctx: _Context, deadline: str) -> tuple[DueActionState, str]:
    chain = ctx.policy.chain_for(ctx.case.urgent)
    director = step_person(ctx.session, ctx.case, "director", ctx.table, ctx.day)
    if director is None or director.id == ctx.case.holder_id:
        return DueActionState.SKIPPED, "the director already holds it or is away"
    level = chain.index("director") + 1 if "director" in chain else len(chain) + 1
    return DueActionState.DONE, _move(ctx, director, f"{deadline}_overdue", "director",
                                      max(level, ctx.case.escalation_level))


def _follow_up(ctx: _Context) -> tuple[DueActionState, str]:
    case = ctx.case
    resident = ctx.session.get(t.Resident, case.resident_id)
    assert resident is not None and case.resolved_at is not None
    tell(ctx.session, ctx.now, "watch.follow_up", resident=resident, case=case, prefer=case.channel,
         buttons=lifecycle.rating_buttons(case), dedupe_key=ctx.dedupe("resident", resident.id),
         number=case.number,
         resolved=_due(ctx, case.resolved_at),
         text=_short(case.text))
    lifecycle.record(ctx.session, case, "followed_up", ctx.now, resolved_at=case.resolved_at.isoformat())
    return DueActionState.DONE, "followed up"


def _close_unrated(ctx: _Context) -> tuple[DueActionState, str]:
    case = ctx.case
    case.state = CaseState.CLOSED
    case.closed_at = ctx.now
    lifecycle.record(ctx.session, case, "auto_closed", ctx.now, reason="no_rating")
    resident = ctx.session.get(t.Resident, case.resident_id)
    assert resident is not None
    tell(ctx.session, ctx.now, "watch.closed_unrated", resident=resident, case=case, prefer=case.channel,
         buttons=[[("button.reopen", f"reo:{case.id}")]], dedupe_key=ctx.dedupe("resident", resident.id),
         number=case.number)
    return DueActionState.DONE, "closed without a rating"


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def perform(session: Session, action: t.DueAction, now: dt.datetime, policy: WatchPolicy
            ) -> tuple[DueActionState, str]:
    """Carry out one claimed case action in the caller's transaction, if it is still wanted."""
    case = session.scalars(
        select(t.Case).where(col(t.Case.id) == action.case_id).with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if case is None or action.ref_at is None:
        return DueActionState.SKIPPED, "no such case"
    community = directory.community(session, case.community_id)
    calendar = directory.calendar_of(community)
    if not still_due(view_of(session, case), action.kind, _aware(action.ref_at) or action.ref_at, now,
                     policy, calendar):
        return DueActionState.SKIPPED, "no longer due"
    ctx = _Context(session, case, action, now, policy, community, calendar,
                   directory.routing_table(session, community), calendar.local_date(now))
    verb, _, deadline = action.kind.partition("_")
    if verb == "remind":
        return _remind(ctx, deadline)
    if action.kind == "escalate_ack":
        return _escalate_ack(ctx)
    if verb == "escalate":
        return _escalate_late(ctx, deadline)
    if action.kind == "follow_up":
        return _follow_up(ctx)
    if action.kind == "close_unrated":
        return _close_unrated(ctx)
    return DueActionState.SKIPPED, f"unknown kind {action.kind}"


# --------------------------------------------------------------------------- the tick


@dataclass
class TickReport:
    """What one pass of the scheduler did."""

    planned: int = 0
    due: int = 0
    done: int = 0
    skipped: int = 0
    lost: int = 0  # claimed by another scheduler first
    failed: int = 0
    digests: int = 0
    find_seconds: float = 0.0
    process_seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    # Actions that failed in this pass: not tried again before the next tick, so a full pass's
    # many rounds do not spend an action's attempts within seconds.
    failed_ids: set[int] = field(default_factory=set)

    @property
    def queued_notices(self) -> bool:
        return self.done > 0 or self.digests > 0


def run_due(engine: Engine, now: dt.datetime, policy: WatchPolicy, *, batch: int = 500,
            report: TickReport | None = None,
            after_commit: Callable[[t.DueAction], None] | None = None) -> TickReport:
    """Perform the due actions, each in its own transaction."""
    report = report or TickReport()
    started = time.perf_counter()
    with UnitOfWork(engine) as uow:
        found = scheduler.due_ids(uow.session, now, batch + len(report.failed_ids))
    ids = [i for i in found if i not in report.failed_ids][:batch]
    report.find_seconds += time.perf_counter() - started
    report.due += len(ids)
    started = time.perf_counter()
    for action_id in ids:
        try:
            with UnitOfWork(engine) as uow:
                action = scheduler.claim(uow.session, action_id, now)
                if action is None:
                    report.lost += 1
                    continue
                state, outcome = perform(uow.session, action, now, policy)
                scheduler.finish(action, state, outcome)
                uow.commit()
        except Exception as exc:  # one broken case must not stop the watch of the others
            log.exception("due action %s failed", action_id)
            report.failed += 1
            report.failed_ids.add(action_id)
            with UnitOfWork(engine) as uow:
                scheduler.note_failure(uow.session, action_id, f"{type(exc).__name__}: {exc}", MAX_ATTEMPTS)
                uow.commit()
            continue
        if state == DueActionState.DONE:
            report.done += 1
            report.kinds[action.kind] = report.kinds.get(action.kind, 0) + 1
        else:
            report.skipped += 1
        if after_commit is not None:
            after_commit(action)
    report.process_seconds += time.perf_counter() - started
    return report


def tick(engine: Engine, now: dt.datetime, policy: WatchPolicy, *, batch: int = 500,
         after_commit: Callable[[t.DueAction], None] | None = None) -> TickReport:
    """One pass: plan from new case events, perform what is due, send the morning digests.

    A pending full pass (plan_full_chunk) goes one chunk per round, with due work performed in
    between, so escalations that fall due during a long pass wait for a chunk, not for the pass.
    Due work larger than `batch` continues on the next pass; the digest goes out after the due
    actions so that it lists the cases as they stand after this pass's escalations.
    """
    report = TickReport()
    report.planned = plan_changes(engine, now, policy)
    full_pending = True
    while True:
        before = report.due
        run_due(engine, now, policy, batch=batch, report=report, after_commit=after_commit)
        more_due = report.due - before >= batch
        offered = 0
        if full_pending:  # False once the pass is done or another process holds the planner lock
            offered, full_pending = plan_full_chunk(engine, now, policy)
            report.planned += offered
        if not (more_due or full_pending or offered):
            break
        # Escalations and reminders append events: plan their follow-ups in the same pass.
        report.planned += plan_changes(engine, now, policy)
    report.planned += plan_changes(engine, now, policy)
    report.digests = send_digests(engine, now, policy)
    return report


# --------------------------------------------------------------------------- lists and digests


def overdue_cases(session: Session, community_id: int, now: dt.datetime) -> list[t.Case]:
    """The community's overdue list: open cases past the deadline they are working towards."""
    rows = session.scalars(
        select(t.Case).where(col(t.Case.community_id) == community_id,
                             col(t.Case.state).in_(list(OPEN)))
    )
    late = [c for c in rows if lifecycle.due_passed(c, now)]
    return sorted(late, key=lambda c: (not c.urgent, lifecycle.next_due(c), c.id))


@dataclass(frozen=True)
class DeadNotice:
    """A notice that could not be delivered, as the director sees it."""

    id: int
    at: dt.datetime
    channel: str
    recipient: str
    state: str
    attempts: int
    reason: str
    case_number: str | None


def _recipient_name(session: Session, row: t.Outbox, lang: str) -> tuple[str, int | None]:
    if row.person_id:
        person = session.get(t.Person, row.person_id)
        return (person.name, person.community_id) if person else (row.address, None)
    if row.resident_id:
        resident = session.get(t.Resident, row.resident_id)
        if resident:
            return (resident.name or say(lang, "watch.resident_no", id=resident.id), resident.community_id)
    return row.address, None


def dead_notices(session: Session, community_id: int, lang: str, *, since: dt.datetime | None = None,
                 limit: int = 20) -> list[DeadNotice]:
    """Notices marked dead or unreachable, newest first, with the channel's reason."""
    stmt = select(t.Outbox).where(
        col(t.Outbox.state).in_([OutboxState.DEAD, OutboxState.UNREACHABLE]))
    if since is not None:
        stmt = stmt.where(col(t.Outbox.created_at) >= since)
    found: list[DeadNotice] = []
    for row in session.scalars(stmt.order_by(col(t.Outbox.id).desc()).limit(limit * 5)):
        name, owner = _recipient_name(session, row, lang)
        case = session.get(t.Case, row.case_id) if row.case_id else None
        if (case.community_id if case else owner) != community_id:
            continue
        found.append(DeadNotice(row.id or 0, row.created_at, row.channel, name, row.state, row.attempts,
                                row.last_error or "—", case.number if case else None))
        if len(found) >= limit:
            break
    return found


def unreachable_recipients(session: Session, community_id: int, lang: str) -> list[tuple[str, str, str]]:
    """(name, channel, reason) of chat accounts we can no longer reach."""
    out = []
    for ident in session.scalars(select(t.Identity).where(col(t.Identity.reachable).is_(False))
                                 .order_by(col(t.Identity.id))):
        if ident.person_id:
            person = session.get(t.Person, ident.person_id)
            if person is None or person.community_id != community_id:
                continue
            name = person.name
        elif ident.resident_id:
            resident = session.get(t.Resident, ident.resident_id)
            if resident is None or resident.community_id != community_id:
                continue
            name = resident.name or say(lang, "watch.resident_no", id=resident.id)
        else:
            continue
        out.append((name, ident.channel, ident.unreachable_reason or "—"))
    return out


def case_lines(session: Session, rows: Iterable[t.Case], lang: str, now: dt.datetime, tz: str,
               *, with_holder: bool = False) -> list[str]:
    lines = []
    for case in rows:
        due = lifecycle.next_due(case)
        holder = session.get(t.Person, case.holder_id) if with_holder and case.holder_id else None
        lines.append(say(lang, "watch.case_line", number=case.number,
                         urgent=say(lang, "case.urgent_tag") if case.urgent else "",
                         state=say(lang, f"state.{case.state}"), due=when(lang, due, tz),
                         overdue=say(lang, "staff.overdue") if (_aware(due) or now) < now else "",
                         holder=f" · {holder.name}" if holder else "", text=_short(case.text, 20)))
    return lines


def digest_text(session: Session, person: t.Person, now: dt.datetime, lang: str) -> str | None:
    """The morning digest of one staff member in `lang`; None when there is nothing to say."""
    community = directory.community(session, person.community_id)
    tz = community.timezone
    mine = lifecycle.open_for_person(session, person)
    parts: list[str] = []
    if mine:
        late = sum(1 for c in mine if (_aware(lifecycle.next_due(c)) or now) < now)
        urgent = sum(1 for c in mine if c.urgent)
        parts.append(say(lang, "watch.digest_head", name=person.name, count=len(mine), urgent=urgent,
                         overdue=late))
        parts.append("\n".join(case_lines(session, mine[:20], lang, now, tz)))
    if person.has_role("director"):
        late_cases = overdue_cases(session, community.id or 0, now)
        dead = dead_notices(session, community.id or 0, lang, since=now - dt.timedelta(days=1), limit=10)
        if late_cases or dead:
            parts.append(say(lang, "watch.digest_director_head", count=len(late_cases)))
            if late_cases:
                parts.append("\n".join(case_lines(session, late_cases[:30], lang, now, tz, with_holder=True)))
            if dead:
                parts.append(say(lang, "watch.digest_dead_head", count=len(dead)))
                parts.append("\n".join(dead_lines(dead, lang, tz)))
        today = directory.calendar_of(community).local_date(now)
        if today == first_working_day(today):
            # The month's figures, once, on the first working day of the next.
            last = today.replace(day=1) - dt.timedelta(days=1)
            report = tally.figures(session, community, last.replace(day=1), last, "grid", now)
            if report.total.cases:
                parts.append(tally.render(report, lang))
    return "\n\n".join(parts) if parts else None


def first_working_day(day: dt.date) -> dt.date:
    """The first working day of `day`'s month."""
    first = day.replace(day=1)
    while not is_working_day(first) and first.month == day.month:
        first += dt.timedelta(days=1)
    return first


def dead_lines(rows: Iterable[DeadNotice], lang: str, tz: str) -> list[str]:
    return [say(lang, "watch.dead_line", at=when(lang, r.at, tz), recipient=r.recipient, channel=r.channel,
                state=say(lang, f"watch.outbox.{r.state}"), attempts=r.attempts, reason=r.reason,
                case=r.case_number or "—") for r in rows]


def send_digests(engine: Engine, now: dt.datetime, policy: WatchPolicy) -> int:
    """The morning digests due now that nobody has sent yet; returns how many were queued."""
    sent = 0
    with UnitOfWork(engine) as uow:
        communities = list(uow.session.scalars(select(t.Community)))
    for community in communities:
        calendar = directory.calendar_of(community)
        local = calendar.to_local(now)
        if not is_working_day(local.date()) or local.time() < policy.digest_time:
            continue
        day = local.date().isoformat()
        with UnitOfWork(engine) as uow:
            people = list(uow.session.scalars(
                select(t.Person).where(col(t.Person.community_id) == community.id,
                                       col(t.Person.active).is_(True))
                .order_by(col(t.Person.id))))
            keys = {p.id: f"digest:{p.id}:{day}" for p in people}
            done = {a.key for a in scheduler.by_keys(uow.session, list(keys.values()))}
        for person in people:
            if keys[person.id] in done:
                continue
            with UnitOfWork(engine) as uow:
                session = uow.session
                table = directory.routing_table(session, community)
                away = is_absent(person.code, local.date(), table)
                text = None if away else digest_text(session, person, now,
                                                     language_of(session, person=person))
                outcome = "on leave" if away else ("sent" if text else "nothing to report")
                if not scheduler.record_done(session, Planned(key=keys[person.id], kind="digest", due_at=now,
                                                              person_id=person.id), now, outcome):
                    continue
                if text is not None:
                    tell(session, now, "watch.digest", person=person, dedupe_key=keys[person.id],
                         topic="digest", text=text)
                    sent += 1
                uow.commit()
    return sent
