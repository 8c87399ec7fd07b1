"""The residents' council in chat: what residents and the council secretary can say and press.

Residents: a proposal (classified as one, or "/propose text"); similar open proposals are offered
first ("co-sign it instead"); /proposals (their council's proposals with stage and co-signs);
/proposal N; /cosign N (附议); /withdraw N; /retitle N title; evaluation buttons (述职评议).
Secretary and director: /meeting KIND YYYY-MM-DD HH:MM PLACE [notify]; /meeting move ID
YYYY-MM-DD (the day it was actually held); /meetings; /agenda [ID];
/merge FROM INTO; /reject N reason; /tocase N service_request|complaint [note]; /discuss N;
/decide N; /adopt N [POST] YYYY-MM-DD decision; /notadopt N reason; /retitle N title;
/export ID [md|docx]. Agenda items carry buttons for the common moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from handlers import dispatch
from handlers.cases import chat as case_chat
from handlers.conversation import Actor, Button, Reply
from handlers.council import export, proposals
from handlers.desk import Desk
from handlers.errors import BadInput
from handlers.registry import directory
from handlers.replies import say, when
from storage import tables as t
from storage.tables import OPEN_PROPOSAL_STAGES, MeetingKind, ProposalStage

MAX_LISTED = 15
MAX_ITEM_BUTTONS = 6
MEETING_WORDS = {
    "collection": MeetingKind.COLLECTION,
    "收集": MeetingKind.COLLECTION,
    "意见收集会": MeetingKind.COLLECTION,
    "收集会": MeetingKind.COLLECTION,
    "意見收集會": MeetingKind.COLLECTION,
    "discussion": MeetingKind.DISCUSSION,
    "讨论": MeetingKind.DISCUSSION,
    "议题讨论会": MeetingKind.DISCUSSION,
    "討論": MeetingKind.DISCUSSION,
    "議題討論會": MeetingKind.DISCUSSION,
    "decision": MeetingKind.DECISION,
    "决策": MeetingKind.DECISION,
    "议事决策会": MeetingKind.DECISION,
    "決策": MeetingKind.DECISION,
    "議事決策會": MeetingKind.DECISION,
    "evaluation": MeetingKind.EVALUATION,
    "评议": MeetingKind.EVALUATION,
    "述职评议": MeetingKind.EVALUATION,
    "評議": MeetingKind.EVALUATION,
    "述職評議": MeetingKind.EVALUATION,
}
NOTIFY_WORDS = ("notify", "--notify", "通知")
PAPER_WORDS = {"minutes": {"minutes", "纪要", "紀要"}, "agenda": {"agenda", "议程", "議程"}}
RATING_WORDS = {
    "满意": "s",
    "滿意": "s",
    "基本满意": "b",
    "基本滿意": "b",
    "不满意": "u",
    "不滿意": "u",
    "satisfied": "s",
    "basically": "b",
    "unsatisfied": "u",
    "s": "s",
    "b": "b",
    "u": "u",
}
CASE_KIND_WORDS = {
    "service_request": "service_request",
    "request": "service_request",
    "办事": "service_request",
    "辦事": "service_request",
    "complaint": "complaint",
    "投诉": "complaint",
    "投訴": "complaint",
}


def _person(actor: Actor) -> t.Person:
    assert actor.person is not None
    return actor.person


def _community_id(actor: Actor) -> int:
    cid = actor.community_id
    assert cid is not None
    return cid


def _secretary(desk: Desk, actor: Actor) -> t.Person:
    person = _person(actor)
    proposals.check_secretary(desk.session, person)
    return person


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tz(desk: Desk, actor: Actor) -> str:
    return directory.community(desk.session, _community_id(actor)).timezone


# --------------------------------------------------------------------------- residents: proposing


def propose_intake(desk: Desk, actor: Actor, text: str, category: str) -> list[Reply]:
    """A resident's proposal: offer similar open proposals to co-sign first, else file it."""
    resident = actor.resident
    if resident is None or resident.building_id is None:
        return case_chat.binding_prompt(desk, actor)
    similar = proposals.similar_open(desk.session, resident.community_id, text)
    if similar:
        desk.expect(actor.channel, actor.address, "proposal_new", text=text, category=category)
        counts = proposals.co_sign_counts(desk.session, similar)
        lines = [say(actor.lang, "council.similar_head")]
        lines += [
            say(
                actor.lang,
                "council.similar_line",
                number=p.number,
                title=p.title,
                count=counts[p.id or 0],
            )
            for p in similar
        ]
        rows = tuple(
            (Button(say(actor.lang, "council.button_co_sign", number=p.number), f"cs:{p.id}"),)
            for p in similar
        )
        rows += ((Button(say(actor.lang, "council.button_file_new"), "pn:"),),)
        return [Reply("\n".join(lines), buttons=rows)]
    return _file(desk, actor, text, category)


case_chat.PROPOSAL_INTAKE.append(propose_intake)


def _file(desk: Desk, actor: Actor, text: str, category: str) -> list[Reply]:
    assert actor.resident is not None
    filed = proposals.propose(
        desk.session,
        actor.resident,
        text,
        category,
        lang=actor.lang,
        channel=actor.channel,
        now=desk.now,
    )
    community = directory.community(desk.session, actor.resident.community_id)
    name = proposals.council_name(community)
    if filed.meeting is not None:
        text_out = say(
            actor.lang,
            "council.filed",
            number=filed.proposal.number,
            title=filed.proposal.title,
            council=name,
            meeting=proposals.meeting_label(actor.lang, filed.meeting, community.timezone),
        )
    else:
        text_out = say(
            actor.lang,
            "council.filed_unscheduled",
            number=filed.proposal.number,
            title=filed.proposal.title,
            council=name,
        )
    return [Reply(text_out)]


@dispatch.command("/propose", "提议", "提議", "/suggest", staff=False)
def propose_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    if not arg.strip():
        raise BadInput("usage", reason="council_usage_propose")
    return propose_intake(desk, actor, arg.strip(), desk.classifier.parse(arg).category)


@dispatch.action("pn", staff=False)
def file_as_new(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    pending = desk.state.pop(desk.pending_key(actor.channel, actor.address))
    if not pending or pending.get("await") != "proposal_new":
        return [Reply(say(actor.lang, "intake.expired"))]
    return _file(desk, actor, str(pending["text"]), str(pending.get("category") or "other"))


@dispatch.pending("proposal_new")
def typed_instead_of_choosing(
    desk: Desk, actor: Actor, pending: dict[str, Any], text: str
) -> list[Reply]:
    """A new message instead of a choice: the offer lapses and the message is read afresh."""
    return case_chat.resident_text(desk, actor, text)


# --------------------------------------------------------------------------- residents: co-signing


def _resident_or_prompt(desk: Desk, actor: Actor) -> t.Resident | None:
    resident = actor.resident
    if resident is None or resident.building_id is None:
        return None
    return resident


@dispatch.action("cs", staff=False)
@dispatch.command("/cosign", "附议", "附議", staff=False)
def co_sign(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    resident = _resident_or_prompt(desk, actor)
    if resident is None:
        return case_chat.binding_prompt(desk, actor)
    pending = desk.state.get(desk.pending_key(actor.channel, actor.address))
    if pending and pending.get("await") == "proposal_new":
        desk.state.pop(desk.pending_key(actor.channel, actor.address))
    proposal = proposals.find(desk.session, arg.split(" ", 1)[0], resident.community_id)
    if proposal.proposer_id == resident.id:
        return [Reply(say(actor.lang, "council.own_proposal", number=proposal.number))]
    if not proposals.co_sign(desk.session, proposal, resident, desk.now):
        return [Reply(say(actor.lang, "council.already_signed", number=proposal.number))]
    count = proposals.co_sign_count(desk.session, proposal)
    return [
        Reply(
            say(
                actor.lang,
                "council.co_signed",
                number=proposal.number,
                title=proposal.title,
                count=count,
                stage=say(actor.lang, f"stage.{proposal.stage}"),
            ),
            buttons=((Button(say(actor.lang, "council.button_withdraw"), f"pw:{proposal.id}"),),),
        )
    ]


@dispatch.action("pw", staff=False)
@dispatch.command("/withdraw", "撤回附议", "撤回附議", staff=False)
def withdraw(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    if case_chat.names_case(arg.split(" ", 1)[0]):  # /withdraw ZN-20261121-0007: the resident's case
        return case_chat.withdraw_case(desk, actor, arg)
    resident = _resident_or_prompt(desk, actor)
    if resident is None:
        return case_chat.binding_prompt(desk, actor)
    proposal = proposals.find(desk.session, arg.split(" ", 1)[0], resident.community_id)
    proposals.withdraw(desk.session, proposal, resident, desk.now)
    return [
        Reply(
            say(
                actor.lang,
                "council.withdrawn",
                number=proposal.number,
                count=proposals.co_sign_count(desk.session, proposal),
            )
        )
    ]


# --------------------------------------------------------------------------- listing


@dispatch.command("/proposals", "提议列表", "提議列表", "议事会", "議事會")
def list_proposals(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    """The council's proposals: open ones first, then the latest decided."""
    if not actor.is_staff and _resident_or_prompt(desk, actor) is None:
        return case_chat.binding_prompt(desk, actor)
    rows = proposals.of_community(desk.session, _community_id(actor))
    if not rows:
        return [Reply(say(actor.lang, "council.none"))]
    rows.sort(key=lambda p: (p.stage not in OPEN_PROPOSAL_STAGES, -(p.id or 0)))
    mine = set()
    if actor.resident is not None:
        mine = {p.id for p in proposals.proposals_of_resident(desk.session, actor.resident)}
    lines = [say(actor.lang, "council.list_head")]
    for p in rows[:MAX_LISTED]:
        lines.append(
            say(
                actor.lang,
                "council.list_line",
                number=p.number,
                title=_short(p.title),
                stage=say(actor.lang, f"stage.{p.stage}"),
                count=proposals.co_sign_count(desk.session, p),
                mine=say(actor.lang, "council.mine_tag") if p.id in mine else "",
            )
        )
    buttons: tuple[tuple[Button, ...], ...] = ()
    if actor.resident is not None:
        buttons = tuple(
            (Button(say(actor.lang, "council.button_co_sign", number=p.number), f"cs:{p.id}"),)
            for p in rows[:MAX_LISTED]
            if p.stage in OPEN_PROPOSAL_STAGES and p.id not in mine
        )[:MAX_ITEM_BUTTONS]
    return [Reply("\n".join(lines), buttons=buttons)]


@dispatch.action("pv")
@dispatch.command("/proposal", "提议详情", "提議詳情")
def show_proposal(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    if not actor.is_staff and _resident_or_prompt(desk, actor) is None:
        return case_chat.binding_prompt(desk, actor)
    proposal = proposals.find(desk.session, arg.split(" ", 1)[0], _community_id(actor))
    tz = _tz(desk, actor)
    lines = [
        say(
            actor.lang,
            "council.card",
            number=proposal.number,
            title=proposal.title,
            text=proposal.text,
            stage=say(actor.lang, f"stage.{proposal.stage}"),
            count=proposals.co_sign_count(desk.session, proposal),
        )
    ]
    if proposal.decision_text:
        due = when(actor.lang, proposal.execution_due, tz) if proposal.execution_due else "—"
        lines.append(
            say(actor.lang, "council.card_decision", decision=proposal.decision_text, due=due)
        )
    if proposal.reason:
        lines.append(say(actor.lang, "council.card_reason", reason=proposal.reason))
    if actor.is_staff:
        lines += [
            say(
                actor.lang,
                "case.history_line",
                at=when(actor.lang, ev.at, tz),
                step=say(actor.lang, f"pstep.{ev.action}"),
                note=ev.note,
            )
            for ev in proposals.history(desk.session, proposal)
        ]
        return [Reply("\n".join(lines), buttons=_staff_buttons(actor, proposal, ()))]
    return [Reply("\n".join(lines))]


@dispatch.command("/retitle", "改标题", "改標題")
def retitle(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    ref, _, title = arg.partition(" ")
    if not title.strip():
        raise BadInput("usage", reason="council_usage_retitle")
    proposal = proposals.find(desk.session, ref, _community_id(actor))
    proposals.retitle(
        desk.session, proposal, title, desk.now, person=actor.person, resident=actor.resident
    )
    return [
        Reply(say(actor.lang, "council.retitled", number=proposal.number, title=proposal.title))
    ]


# --------------------------------------------------------------------------- residents: evaluating


@dispatch.action("pe", staff=False)
def evaluate_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    ref, _, rating = arg.partition(":")
    return _evaluate(desk, actor, ref, rating, "")


@dispatch.command("/evaluate", "评议", "評議", staff=False)
def evaluate_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    parts = arg.split(" ", 2)
    if len(parts) < 2:
        raise BadInput("usage", reason="council_usage_evaluate")
    return _evaluate(
        desk,
        actor,
        parts[0],
        RATING_WORDS.get(parts[1].lower(), parts[1]),
        parts[2] if len(parts) > 2 else "",
    )


def _evaluate(desk: Desk, actor: Actor, ref: str, rating: str, text: str) -> list[Reply]:
    resident = _resident_or_prompt(desk, actor)
    if resident is None:
        return case_chat.binding_prompt(desk, actor)
    proposal = proposals.find(desk.session, ref, resident.community_id)
    proposals.evaluate(desk.session, proposal, resident, rating, text, desk.now)
    if text:
        return [Reply(say(actor.lang, "council.evaluated", number=proposal.number))]
    desk.expect(actor.channel, actor.address, "proposal_comment", proposal=proposal.id)
    return [
        Reply(say(actor.lang, "council.ask_comment", number=proposal.number), expects_text=True)
    ]


@dispatch.pending("proposal_comment")
def evaluation_comment(desk: Desk, actor: Actor, pending: dict[str, Any], text: str) -> list[Reply]:
    resident = _resident_or_prompt(desk, actor)
    if resident is None:
        return case_chat.binding_prompt(desk, actor)
    proposal = proposals.find(desk.session, str(pending["proposal"]), resident.community_id)
    proposals.comment(desk.session, proposal, resident, text, desk.now)
    return [Reply(say(actor.lang, "council.evaluated", number=proposal.number))]


# --------------------------------------------------------------------------- secretary: meetings


def parse_when(date_text: str, time_text: str, community: t.Community) -> dt.datetime:
    """ "2026-11-28" "19:00" in the community's time zone, as aware UTC."""
    try:
        local = dt.datetime.strptime(f"{date_text} {time_text}", "%Y-%m-%d %H:%M")
    except ValueError as exc:
        raise BadInput("when", reason="council_usage_meeting") from exc
    return directory.calendar_of(community).to_utc(local)


MOVE_WORDS = ("move", "改期")


@dispatch.command("/meeting", "开会", "開會", "/schedule", staff=True)
def schedule_meeting(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    words = arg.split()
    if words and words[0].lower() in MOVE_WORDS:
        return _move_meeting(desk, actor, person, words[1:])
    if len(words) > 1 and "T" in words[1]:  # 2026-11-28T19:00
        date_part, _, time_part = words[1].partition("T")
        words = [words[0], date_part, time_part, *words[2:]]
    if len(words) < 3 or words[0].lower() not in MEETING_WORDS:
        raise BadInput("usage", reason="council_usage_meeting")
    notify = bool(words) and words[-1].lower() in NOTIFY_WORDS
    if notify:
        words = words[:-1]
    community = directory.community(desk.session, person.community_id)
    starts_at = parse_when(words[1], words[2], community)
    place = " ".join(words[3:])
    row, picked = proposals.schedule(
        desk.session,
        person,
        MEETING_WORDS[words[0].lower()],
        starts_at,
        place,
        desk.now,
        notify=notify,
    )
    text = say(
        actor.lang,
        "council.scheduled",
        id=row.id,
        meeting=proposals.meeting_label(actor.lang, row, community.timezone),
        count=len(picked),
        notified=say(actor.lang, "council.residents_notified") if notify else "",
    )
    return [
        Reply(text, buttons=((Button(say(actor.lang, "council.button_agenda"), f"ag:{row.id}"),),))
    ]


def _move_meeting(desk: Desk, actor: Actor, person: t.Person, words: list[str]) -> list[Reply]:
    """/meeting move ID 2026-12-03: the meeting was (or will be) held on another day."""
    if len(words) != 2 or not _is_date(words[1]):
        raise BadInput("usage", reason="council_usage_meeting_move")
    row = proposals.meeting(desk.session, words[0], person.community_id)
    was = proposals.move_meeting(desk.session, person, row, dt.date.fromisoformat(words[1]), desk.now)
    community = directory.community(desk.session, person.community_id)
    return [Reply(say(actor.lang, "council.meeting_moved", id=row.id, was=was.isoformat(),
                      meeting=proposals.meeting_label(actor.lang, row, community.timezone)))]


@dispatch.command("/meetings", "会议", "會議", staff=True)
def list_meetings(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    rows = proposals.meetings_of(desk.session, person.community_id)
    if not rows:
        return [Reply(say(actor.lang, "council.no_meetings"))]
    tz = _tz(desk, actor)
    lines = [say(actor.lang, "council.meetings_head")]
    for row in rows[-MAX_LISTED:]:
        lines.append(
            say(
                actor.lang,
                "council.meetings_line",
                id=row.id,
                meeting=proposals.meeting_label(actor.lang, row, tz),
                count=len(proposals.agenda(desk.session, row)),
                held=say(actor.lang, "council.held_tag") if row.starts_at <= desk.now else "",
            )
        )
    upcoming = [r for r in rows if r.starts_at > desk.now][:MAX_ITEM_BUTTONS]
    buttons = tuple(
        (Button(say(actor.lang, "council.button_agenda_of", id=r.id), f"ag:{r.id}"),)
        for r in upcoming
    )
    return [Reply("\n".join(lines), buttons=buttons)]


# --------------------------------------------------------------------------- secretary: the agenda


def _staff_buttons(
    actor: Actor, proposal: t.Proposal, dups: tuple[t.Proposal, ...]
) -> tuple[tuple[Button, ...], ...]:
    """The next moves for an item, as buttons (ids only: callback data stays under 64 bytes)."""
    lang, pid, n = actor.lang, proposal.id, proposal.number
    if proposal.stage in (ProposalStage.COLLECTED, ProposalStage.ON_AGENDA):
        rows: list[tuple[Button, ...]] = [
            (
                Button(say(lang, "council.button_discuss", number=n), f"pd:{pid}"),
                Button(say(lang, "council.button_reject", number=n), f"pr:{pid}"),
            )
        ]
        rows += [
            (
                Button(
                    say(lang, "council.button_merge", number=n, into=d.number), f"pm:{pid}:{d.id}"
                ),
            )
            for d in dups[:1]
            if (d.id or 0) < (pid or 0)
        ]
        return tuple(rows)
    if proposal.stage == ProposalStage.DISCUSSION:
        return (
            (
                Button(say(lang, "council.button_decide", number=n), f"pdc:{pid}"),
                Button(say(lang, "council.button_reject", number=n), f"pr:{pid}"),
            ),
        )
    if proposal.stage == ProposalStage.DECISION:
        return (
            (
                Button(say(lang, "council.button_adopt", number=n), f"pa:{pid}"),
                Button(say(lang, "council.button_not_adopt", number=n), f"pna:{pid}"),
            ),
        )
    return ()


@dispatch.action("ag", staff=True)
@dispatch.command("/agenda", "议程", "議程", staff=True)
def show_agenda(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    """The agenda of a meeting (default: the next collection meeting), most supported first."""
    person = _secretary(desk, actor)
    tz = _tz(desk, actor)
    if arg.strip():
        row: t.Meeting | None = proposals.meeting(
            desk.session, arg.split(" ", 1)[0], person.community_id
        )
    else:
        row = proposals.current_collection_meeting(desk.session, person.community_id, desk.now)
    lines: list[str] = []
    items: list[proposals.AgendaItem] = []
    if row is not None:
        lines.append(
            say(
                actor.lang,
                "council.agenda_head",
                id=row.id,
                meeting=proposals.meeting_label(actor.lang, row, tz),
            )
        )
        items = proposals.agenda(desk.session, row)
    waiting = (
        proposals.unplaced(desk.session, person.community_id)
        if row is None or not arg.strip()
        else []
    )
    if row is None:
        lines.append(say(actor.lang, "council.agenda_no_meeting"))
    if not items and not waiting:
        lines.append(say(actor.lang, "council.agenda_empty"))
    buttons: list[tuple[Button, ...]] = []
    for i, item in enumerate(items + waiting, start=1):
        if waiting and i == len(items) + 1:
            lines.append(say(actor.lang, "council.agenda_waiting"))
        lines.append(_item_line(actor.lang, i, item))
        if len(buttons) < MAX_ITEM_BUTTONS * 2:
            buttons += _staff_buttons(actor, item.proposal, item.duplicates)
    return [Reply("\n".join(lines), buttons=tuple(buttons))]


def _item_line(lang: str, i: int, item: proposals.AgendaItem) -> str:
    dup = ""
    if item.duplicates:
        dup = say(
            lang, "council.duplicate_tag", numbers="、".join(d.number for d in item.duplicates)
        )
    return say(
        lang,
        "council.agenda_line",
        i=i,
        number=item.proposal.number,
        title=_short(item.proposal.title),
        count=item.co_signs,
        stage=say(lang, f"stage.{item.proposal.stage}"),
        duplicate=dup,
    )


# --------------------------------------------------------------------------- secretary: moves


def _find_for(desk: Desk, actor: Actor, ref: str) -> t.Proposal:
    return proposals.find(desk.session, ref, _person(actor).community_id)


@dispatch.action("pd", staff=True)
@dispatch.command("/discuss", "提交讨论", "提交討論", staff=True)
def discuss(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    proposal = _find_for(desk, actor, arg.split(" ", 1)[0])
    row = proposals.to_discussion(desk.session, proposal, person, desk.now)
    return [Reply(_moved(desk, actor, proposal, row))]


@dispatch.action("pdc", staff=True)
@dispatch.command("/decide", "提交决策", "提交決策", staff=True)
def decide(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    proposal = _find_for(desk, actor, arg.split(" ", 1)[0])
    row = proposals.to_decision(desk.session, proposal, person, desk.now)
    return [Reply(_moved(desk, actor, proposal, row))]


def _moved(desk: Desk, actor: Actor, proposal: t.Proposal, row: t.Meeting | None) -> str:
    where = (
        proposals.meeting_label(actor.lang, row, _tz(desk, actor))
        if row
        else say(actor.lang, "council.meeting_unscheduled")
    )
    return say(
        actor.lang,
        "council.moved",
        number=proposal.number,
        stage=say(actor.lang, f"stage.{proposal.stage}"),
        meeting=where,
    )


@dispatch.action("pm", staff=True)
@dispatch.command("/merge", "合并", "合併", staff=True)
def merge(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    parts = arg.replace(":", " ").split()
    if len(parts) < 2:
        raise BadInput("usage", reason="council_usage_merge")
    source, target = _find_for(desk, actor, parts[0]), _find_for(desk, actor, parts[1])
    count = proposals.merge(desk.session, source, target, person, desk.now)
    return [
        Reply(
            say(
                actor.lang,
                "council.merged_done",
                number=source.number,
                into=target.number,
                count=count,
            )
        )
    ]


def _to_case_buttons(lang: str, proposal: t.Proposal) -> tuple[tuple[Button, ...], ...]:
    """Instead of a reason: hand the proposal to the case desk as a request or a complaint."""
    return tuple(
        (Button(say(lang, "council.button_to_case", kind=say(lang, f"kind.{kind}")),
                f"pc:{proposal.id}:{kind}"),)
        for kind in ("service_request", "complaint")
    )


def _reason_step(*, prefix: str, commands: tuple[str, ...], what: str, ask: str, done: str,
                 apply: Callable[[Session, t.Proposal, t.Person, str, dt.datetime], object],
                 offer: Callable[[str, t.Proposal], tuple[tuple[Button, ...], ...]] | None = None,
                 check: Callable[[Session, t.Proposal, t.Person, dt.datetime], object] | None = None
                 ) -> None:
    """Register a secretary's step on a proposal that needs a reason (reject, not adopt).

    Its button asks for the reason (with `offer`'s buttons beside the prompt) once `check`
    allows the step; its command carries it (`/reject P reason`) or asks when it does not; the
    next message answers.
    """

    def ask_for_reason(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
        person = _secretary(desk, actor)
        proposal = _find_for(desk, actor, arg)
        if check is not None:
            check(desk.session, proposal, person, desk.now)
        desk.expect(actor.channel, actor.address, what, proposal=proposal.id)
        return [Reply(say(actor.lang, ask, number=proposal.number), expects_text=True,
                      buttons=offer(actor.lang, proposal) if offer else ())]

    def carry_out(desk: Desk, actor: Actor, ref: str, reason: str) -> list[Reply]:
        person = _secretary(desk, actor)
        proposal = _find_for(desk, actor, ref)
        apply(desk.session, proposal, person, reason, desk.now)
        return [Reply(say(actor.lang, done, number=proposal.number))]

    dispatch.text_step(prefix=prefix, commands=commands, what=what, key="proposal", staff=True,
                       ask=ask_for_reason, carry_out=carry_out)


_reason_step(
    prefix="pr", commands=("/reject", "驳回", "駁回"), what="proposal_reject",
    ask="council.ask_reject_reason", done="council.rejected_done", apply=proposals.reject,
    offer=_to_case_buttons,
)


@dispatch.action("pc", staff=True)
def to_case_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    desk.state.pop(desk.pending_key(actor.channel, actor.address))
    ref, _, kind = arg.partition(":")
    return _to_case(desk, actor, ref, kind, "")


@dispatch.command("/tocase", "转工单", "轉工單", staff=True)
def to_case_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    parts = arg.split(" ", 2)
    if len(parts) < 2 or parts[1].lower() not in CASE_KIND_WORDS:
        raise BadInput("usage", reason="council_usage_tocase")
    return _to_case(
        desk, actor, parts[0], CASE_KIND_WORDS[parts[1].lower()], parts[2] if len(parts) > 2 else ""
    )


def _to_case(desk: Desk, actor: Actor, ref: str, kind: str, note: str) -> list[Reply]:
    person = _secretary(desk, actor)
    proposal = _find_for(desk, actor, ref)
    opened = proposals.to_case(desk.session, proposal, person, kind, note, desk.now)
    return [
        Reply(
            say(
                actor.lang,
                "council.to_case_done",
                number=proposal.number,
                case_number=opened.case.number,
                name=opened.holder.name,
                post=opened.post.name,
            )
        )
    ]


@dispatch.action("pa", staff=True)
def adopt_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    proposal = _find_for(desk, actor, arg)
    proposals.check_decision_due(desk.session, proposal, person, desk.now)  # before asking for it
    desk.expect(actor.channel, actor.address, "proposal_adopt", proposal=proposal.id)
    return [Reply(say(actor.lang, "council.ask_adopt", number=proposal.number), expects_text=True)]


@dispatch.command("/adopt", "通过提议", "通過提議", staff=True)
def adopt_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    ref, _, rest = arg.partition(" ")
    if not rest.strip():
        return adopt_button(desk, actor, ref)
    return _adopt(desk, actor, ref, rest)


@dispatch.pending("proposal_adopt")
def adopt_text(desk: Desk, actor: Actor, pending: dict[str, Any], text: str) -> list[Reply]:
    return _adopt(desk, actor, str(pending["proposal"]), text)


def _adopt(desk: Desk, actor: Actor, ref: str, rest: str) -> list[Reply]:
    """ "[POST] YYYY-MM-DD decision text": the post is optional (default: the service centre)."""
    person = _secretary(desk, actor)
    proposal = _find_for(desk, actor, ref)
    words = rest.split(" ")
    post_code = None
    if words and not _is_date(words[0]):
        post_code, words = words[0], words[1:]
    if len(words) < 2 or not _is_date(words[0]):
        raise BadInput("usage", reason="council_usage_adopt")
    due = dt.date.fromisoformat(words[0])
    opened = proposals.adopt(
        desk.session, proposal, person, " ".join(words[1:]), due, desk.now, post_code=post_code
    )
    return [
        Reply(
            say(
                actor.lang,
                "council.adopted_done",
                number=proposal.number,
                case_number=opened.case.number,
                post=opened.post.name,
                name=opened.holder.name,
                due=when(actor.lang, proposal.execution_due or desk.now, _tz(desk, actor)),
            )
        )
    ]


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


_reason_step(
    prefix="pna", commands=("/notadopt", "不通过提议", "不通過提議"), what="proposal_not_adopt",
    ask="council.ask_not_adopt_reason", done="council.not_adopted_done", apply=proposals.not_adopt,
    check=proposals.check_decision_due,
)


# --------------------------------------------------------------------------- secretary: export


@dispatch.command("/export", "导出", "導出", staff=True)
def export_paper(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _secretary(desk, actor)
    parts = arg.split()
    if not parts:
        raise BadInput("usage", reason="council_usage_export")
    row = proposals.meeting(desk.session, parts[0], person.community_id)
    words = [w.lower() for w in parts[1:]]
    fmt = "docx" if "docx" in words else "md"
    minutes = (
        True
        if PAPER_WORDS["minutes"] & set(words)
        else False
        if PAPER_WORDS["agenda"] & set(words)
        else None
    )
    if set(words) - {"md", "docx"} - PAPER_WORDS["minutes"] - PAPER_WORDS["agenda"]:
        raise BadInput("usage", reason="council_usage_export")
    paper = export.paper(desk.session, row, desk.now, minutes=minutes)
    # A link to the console's download (the secretary's or director's sign-in opens it), never a
    # path on the server; the Markdown is shown as text, its file a link too.
    if fmt == "docx":
        link = export.download_url(row.id or 0, "docx", minutes)
        return [Reply(say(actor.lang, "council.exported_docx", path=link, id=row.id))]
    link = export.download_url(row.id or 0, "md", minutes)
    return [Reply(f"{export.to_text(paper)}\n\nMarkdown: {link}")]


@dispatch.command("/council", "议事会帮助", "議事會幫助")
def council_help(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    if actor.is_staff and proposals.is_secretary(desk.session, _person(actor)):
        return [Reply(say(actor.lang, "council.help_secretary"))]
    return [Reply(say(actor.lang, "council.help_resident"))]
