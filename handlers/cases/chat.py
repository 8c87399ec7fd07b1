"""The case desk in chat: what residents and staff can say and press.

Residents: write a matter; /status [number]; /mine (我的工单); /grid (我的网格员); add information;
rate; reopen; withdraw (the 撤回 button, /withdraw N, or 取消 / 算了 right after filing). Staff: /mine; /case N; acknowledge, reply, transfer, resolve, return (退单), reclassify by button
or by command (/ack N, /reply N text, /transfer N POST note, /resolve N note, /return N reason,
/reclassify N [kind] category).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from handlers import dispatch
from handlers.cases import corrections, lifecycle
from handlers.conversation import Actor, Button, Reply
from handlers.desk import Desk
from handlers.errors import BadInput, NotFound
from handlers.registry import directory, residents
from handlers.replies import say, when
from nlu.parse import Parse
from storage import tables as t
from storage.clock import as_utc
from storage.tables import OPEN_STATES, CaseState

MAX_LISTED = 10
# A bare 取消 / 算了 this soon after filing withdraws the case just filed; later, it needs the
# case's number (/withdraw N) or its button, so an old case is never withdrawn by a stray word.
JUST_FILED = dt.timedelta(minutes=10)
# A case number (ZN-20261121-0007), as opposed to a proposal's (ZN-P-2026-0001) or an id.
CASE_NUMBER = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*-\d{8}-\d{4,}$")
# Proposals go to the residents' council; the council workflow registers its intake here.
PROPOSAL_INTAKE: list[Any] = []


def _resident(actor: Actor) -> t.Resident:
    assert actor.resident is not None
    return actor.resident


def _person(actor: Actor) -> t.Person:
    assert actor.person is not None
    return actor.person


def _case_id(arg: str) -> str:
    ref = arg.split(":", 1)[0].split(" ", 1)[0].strip()
    if not ref:
        raise BadInput("no case", reason="no_case")
    if ref.isdigit() and t.row_id(ref) is None:  # past the ids' range, or ²: no case
        raise NotFound(what=ref)
    return ref


# --------------------------------------------------------------------------- binding


def binding_prompt(desk: Desk, actor: Actor) -> list[Reply]:
    rows = tuple(
        (Button(c.name, f"com:{c.code}"),) for c in residents.committees(desk.session)
    )
    return [Reply(say(actor.lang, "bind.prompt"), buttons=rows)]


@dispatch.free_text("unbound")
def unbound_text(desk: Desk, actor: Actor, text: str) -> list[Reply]:
    """A resident we do not place yet: a building code binds them, a location finds the nearest."""
    for att in actor.attachments:
        if att.kind == "location" and att.latitude is not None and att.longitude is not None:
            building = residents.nearest_building(desk.session, att.latitude, att.longitude)
            if building is not None:
                return bind_to(desk, actor, building.code)
    token = text.strip().removeprefix("b_")
    if token:
        try:
            return bind_to(desk, actor, token)
        except NotFound:
            pass
    return binding_prompt(desk, actor)


def bind_to(desk: Desk, actor: Actor, code: str) -> list[Reply]:
    resident = residents.bind(desk.session, actor, code, desk.now)
    building = directory.building(desk.session, resident.building_id)
    assert building is not None
    sign = directory.grid_sign(desk.session, building)
    return [Reply(say(actor.lang, "bind.done", building=building.name, grid=sign.grid, worker=sign.worker,
                      phone=sign.worker_phone))]


@dispatch.action("com")
def pick_committee(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    rows = tuple((Button(b.name, f"bind:{b.code}"),) for b in residents.buildings_of_committee(desk.session, arg))
    if not rows:
        raise NotFound(what=arg)
    return [Reply(say(actor.lang, "bind.pick_building"), buttons=rows)]


@dispatch.action("bind", staff=False)
def pick_building(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    return bind_to(desk, actor, arg)


@dispatch.command("/grid", "我的网格员", "我的網格員", "my grid worker", staff=False)
def grid_worker(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    """网格指示牌: who serves the resident's grid and how to reach them."""
    resident = actor.resident
    if resident is None or resident.building_id is None:
        return binding_prompt(desk, actor)
    building = directory.building(desk.session, resident.building_id)
    assert building is not None
    sign = directory.grid_sign(desk.session, building)
    return [Reply(say(actor.lang, "grid.sign", building=sign.building, committee=sign.committee, grid=sign.grid,
                      worker=sign.worker, post=sign.post, phone=sign.worker_phone or "—",
                      backup=sign.backup or "—", backup_phone=sign.backup_phone or "—"))]


# --------------------------------------------------------------------------- resident: new matters


@dispatch.free_text("resident")
def resident_text(desk: Desk, actor: Actor, text: str) -> list[Reply]:
    if not text:
        desk.expect(actor.channel, actor.address, "describe",
                    attachments=[a.__dict__ for a in actor.attachments])
        voice = any(a.kind == "voice" for a in actor.attachments)
        return [Reply(say(actor.lang, "intake.describe_voice" if voice else "intake.describe_attachment"),
                      expects_text=True)]
    parse = desk.classifier.parse(text)  # the reply's language was chosen by intake already
    if parse.urgent:
        # Someone may be in danger: no question first, since nobody is alerted while a button
        # goes unpressed. The case opens now with the 110/119/120 line, at the building the
        # message names if we know it; small talk or a proposal read urgent is filed as a request.
        _fill_contact(_resident(actor), parse)
        kind = parse.kind if parse.kind in ("service_request", "complaint") else "service_request"
        named = parse.entity("building")
        try:
            at = directory.building_by_code(desk.session, named) if named else None
        except NotFound:
            at = None
        return file_matter(desk, actor, text, kind, parse.category, True, building=at)
    # An unsure reading asks first, whatever it leans to: a complaint misread as small talk
    # would otherwise get no case at all.
    if parse.confidence.get("kind", 1.0) >= desk.clarify_below and parse.kind == "other":
        return _small_talk(desk, actor, parse)
    if parse.confidence.get("kind", 1.0) < desk.clarify_below:
        desk.expect(actor.channel, actor.address, "clarify", text=text, category=parse.category,
                    urgent=parse.urgent, attachments=[a.__dict__ for a in actor.attachments])
        return [Reply(say(actor.lang, "intake.clarify"), buttons=(
            (Button(say(actor.lang, "kind.service_request"), "kind:service_request"),),
            (Button(say(actor.lang, "kind.complaint"), "kind:complaint"),),
            (Button(say(actor.lang, "kind.proposal"), "kind:proposal"),),
        ))]
    _fill_contact(_resident(actor), parse)
    named = parse.entity("building")
    own = directory.building(desk.session, _resident(actor).building_id)
    if named and own is not None and named != own.code:
        try:
            other = directory.building_by_code(desk.session, named)
        except NotFound:
            other = None
        if other is not None:
            desk.expect(actor.channel, actor.address, "place", text=text, kind=parse.kind,
                        category=parse.category, urgent=parse.urgent,
                        attachments=[a.__dict__ for a in actor.attachments])
            return [Reply(say(actor.lang, "intake.confirm_place", named=other.name, own=own.name), buttons=(
                (Button(say(actor.lang, "intake.place_named", named=other.name), f"at:{other.code}"),),
                (Button(say(actor.lang, "intake.place_own", own=own.name), "at:-"),),
            ))]
    return file_matter(desk, actor, text, parse.kind, parse.category, parse.urgent)


def _fill_contact(resident: t.Resident, parse: Parse) -> None:
    """A phone number, unit or room the resident mentions fills what we do not know yet.

    Known values are never overwritten from free text; a different building is confirmed first.
    """
    for field, entity in (("phone", "phone"), ("unit", "unit"), ("room", "room")):
        value = parse.entity(entity)
        if value and not getattr(resident, field):
            setattr(resident, field, value[:32])


def file_matter(desk: Desk, actor: Actor, text: str, kind: str, category: str, urgent: bool,
                building: t.Building | None = None) -> list[Reply]:
    """A request or complaint becomes a case; a proposal goes to the council intake."""
    if kind == "proposal":
        if PROPOSAL_INTAKE:
            return list(PROPOSAL_INTAKE[0](desk, actor, text, category))
        raise NotFound(what="council")
    opened = lifecycle.open_case(
        desk.session,
        resident=_resident(actor),
        kind=kind,
        category=category,
        urgent=urgent,
        text=text,
        lang=actor.lang,
        channel=actor.channel,
        now=desk.now,
        attachments=actor.attachments,
        building=building,
    )
    desk.state.put(desk.just_filed_key(actor.channel, actor.address), {"case": opened.case.id},
                   ttl=int(JUST_FILED.total_seconds()))
    community = directory.community(desk.session, opened.case.community_id)
    tz = community.timezone
    lines = [say(actor.lang, "case.opened", number=opened.case.number, name=opened.holder.name,
                 post=opened.post.name, ack_due=when(actor.lang, opened.deadlines.acknowledge, tz),
                 reply_due=when(actor.lang, opened.deadlines.reply, tz),
                 resolve_due=when(actor.lang, opened.deadlines.resolve, tz))]
    if urgent:
        lines.insert(0, say(actor.lang, "case.urgent_warning"))
    return [Reply("\n\n".join(lines), buttons=(
        (Button(say(actor.lang, "button.add_info"), f"add:{opened.case.id}"),
         Button(say(actor.lang, "button.status"), f"sts:{opened.case.id}")),
        (Button(say(actor.lang, "button.withdraw"), f"wd:{opened.case.id}"),),
    ))]


def _attachments_from(pending: dict[str, Any]) -> tuple[Any, ...]:
    from handlers.conversation import Attachment

    return tuple(Attachment(**a) for a in pending.get("attachments", []))


@dispatch.action("kind", staff=False)
def clarified(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    pending = desk.state.pop(desk.pending_key(actor.channel, actor.address))
    if not pending or pending.get("await") != "clarify" or arg not in ("service_request", "complaint", "proposal"):
        return [Reply(say(actor.lang, "intake.expired"))]
    actor.attachments = _attachments_from(pending)
    return file_matter(desk, actor, str(pending["text"]), arg, str(pending["category"]), bool(pending["urgent"]))


@dispatch.action("at", staff=False)
def placed(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    pending = desk.state.pop(desk.pending_key(actor.channel, actor.address))
    if not pending or pending.get("await") != "place":
        return [Reply(say(actor.lang, "intake.expired"))]
    building = None if arg == "-" else directory.building_by_code(desk.session, arg)
    actor.attachments = _attachments_from(pending)
    return file_matter(desk, actor, str(pending["text"]), str(pending["kind"]), str(pending["category"]),
                       bool(pending["urgent"]), building=building)


@dispatch.pending("clarify")
@dispatch.pending("place")
def typed_instead_of_pressing(desk: Desk, actor: Actor, pending: dict[str, Any], text: str) -> list[Reply]:
    """A new message instead of a button press: treat it as a new message."""
    return resident_text(desk, actor, text)


@dispatch.pending("describe")
def described(desk: Desk, actor: Actor, pending: dict[str, Any], text: str) -> list[Reply]:
    # In the order they were sent, so the case card lists them as the resident sent them.
    actor.attachments = _attachments_from(pending) + actor.attachments
    return resident_text(desk, actor, text)


def _small_talk(desk: Desk, actor: Actor, parse: Parse) -> list[Reply]:
    intent = parse.intent or "out_of_scope"
    if intent == "query_status":
        number = parse.entity("case_number")
        return case_status(desk, actor, number or "")
    if intent == "ask_grid_worker":
        return grid_worker(desk, actor, "")
    if intent in ("greet", "thanks", "help"):
        return [Reply(say(actor.lang, f"talk.{intent}"))]
    return [Reply(say(actor.lang, "talk.out_of_scope"))]


# --------------------------------------------------------------------------- resident: own cases


@dispatch.command("/status", "/mine", "我的工单", "我的工單", "my cases", "/cases", staff=False)
def case_status(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    resident = actor.resident
    if resident is None:
        return binding_prompt(desk, actor)
    if arg.strip():
        case = lifecycle.for_resident(desk.session, _case_id(arg), resident)
        return [Reply(lifecycle.status_text(desk.session, case, actor.lang), buttons=_resident_case_buttons(actor, case))]
    mine = lifecycle.of_resident(desk.session, resident, MAX_LISTED)
    if not mine:
        return [Reply(say(actor.lang, "case.none"))]
    lines = [say(actor.lang, "case.list_head")]
    for case in mine:
        lines.append(say(actor.lang, "case.list_line", number=case.number, state=say(actor.lang, f"state.{case.state}"),
                         text=_short(case.text)))
    rows = tuple((Button(c.number, f"sts:{c.id}"),) for c in mine[:5])
    return [Reply("\n".join(lines), buttons=rows)]


def _short(text: str, n: int = 24) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _resident_case_buttons(actor: Actor, case: t.Case) -> tuple[tuple[Button, ...], ...]:
    lang = actor.lang
    if case.state == CaseState.RESOLVED:
        return (
            (Button(say(lang, "rating.satisfied"), f"rate:{case.id}:s"),
             Button(say(lang, "rating.basically_satisfied"), f"rate:{case.id}:b")),
            (Button(say(lang, "rating.unsatisfied"), f"rate:{case.id}:u"),),
        )
    if case.state == CaseState.CLOSED:
        if lifecycle.is_withdrawn(case):  # the resident's own choice: a new message files anew
            return ()
        return ((Button(say(lang, "button.reopen"), f"reo:{case.id}"),),)
    return ((Button(say(lang, "button.add_info"), f"add:{case.id}"),
             Button(say(lang, "button.withdraw"), f"wd:{case.id}")),)


def names_case(ref: str) -> bool:
    """Whether `ref` is a case number, which /withdraw N withdraws (a proposal's number or id
    withdraws a co-signature: handlers/council/chat.py)."""
    return bool(CASE_NUMBER.match(ref.strip()))


@dispatch.action("wd", staff=False)
def withdraw_case(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    """The resident withdraws their own case: closed while nobody has acknowledged it, else the
    wish goes to the holder as a note (lifecycle.withdraw)."""
    resident = actor.resident
    if resident is None:
        return binding_prompt(desk, actor)
    case = lifecycle.for_resident(desk.session, _case_id(arg), resident)
    closed = lifecycle.withdraw(desk.session, case, resident, desk.now)
    return [Reply(say(actor.lang, "case.withdrawn" if closed else "case.withdraw_passed_on",
                      number=case.number))]


def withdraw_just_filed(desk: Desk, actor: Actor) -> list[Reply] | None:
    """Withdraw the case the resident filed here within JUST_FILED; None when there is none.
    Only a case they filed by writing counts: not one the council opened in their name."""
    filed = desk.state.get(desk.just_filed_key(actor.channel, actor.address))
    case = desk.session.get(t.Case, int(filed["case"])) if filed else None
    if case is None or case.resident_id != _resident(actor).id or case.state not in OPEN_STATES \
            or as_utc(case.created_at) < desk.now - JUST_FILED:
        return None
    return withdraw_case(desk, actor, str(case.id))


@dispatch.action("sts", staff=False)
def status_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    return case_status(desk, actor, _case_id(arg))


@dispatch.action("rate", staff=False)
def rate_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    ref, _, rating = arg.partition(":")
    return _rate(desk, actor, ref, rating, "")


@dispatch.command("/rate", "评价", "評價", staff=False)
def rate_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    parts = arg.split(" ", 2)
    if len(parts) < 2:
        raise BadInput("usage", reason="usage")
    words = {"满意": "s", "滿意": "s", "基本满意": "b", "基本滿意": "b", "不满意": "u", "不滿意": "u",
             "satisfied": "s", "basically": "b", "unsatisfied": "u"}
    return _rate(desk, actor, parts[0], words.get(parts[1].lower(), parts[1].lower()),
                 parts[2] if len(parts) > 2 else "")


def _rate(desk: Desk, actor: Actor, ref: str, rating: str, comment: str) -> list[Reply]:
    case = lifecycle.for_resident(desk.session, _case_id(ref), _resident(actor))
    lifecycle.rate(desk.session, case, _resident(actor), rating, comment, desk.now)
    if case.state == CaseState.REOPENED:
        desk.expect(actor.channel, actor.address, "add", case=case.id)
        return [Reply(say(actor.lang, "case.rated_unsatisfied", number=case.number), expects_text=True)]
    return [Reply(say(actor.lang, "case.rated_thanks", number=case.number))]


@dispatch.command("/help", "帮助", "幫助", "help")
def help_command(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    return [Reply(say(actor.lang, "help.staff" if actor.is_staff else "talk.help"))]


# --------------------------------------------------------------------------- staff


@dispatch.free_text("staff")
def staff_text(desk: Desk, actor: Actor, text: str) -> list[Reply]:
    return [Reply(say(actor.lang, "help.staff"))]


@dispatch.command("/mine", "/cases", "我的工单", "我的工單", "my cases", staff=True)
def staff_cases(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    person = _person(actor)
    mine = lifecycle.open_for_person(desk.session, person)
    if not mine:
        return [Reply(say(actor.lang, "staff.no_cases"))]
    community = directory.community(desk.session, person.community_id)
    lines = [say(actor.lang, "staff.list_head", count=len(mine))]
    for case in mine[:20]:
        overdue = lifecycle.next_due(case) < desk.now
        lines.append(say(actor.lang, "staff.list_line", number=case.number,
                         urgent=say(actor.lang, "case.urgent_tag") if case.urgent else "",
                         state=say(actor.lang, f"state.{case.state}"),
                         due=when(actor.lang, lifecycle.next_due(case), community.timezone),
                         overdue=say(actor.lang, "staff.overdue") if overdue else "", text=_short(case.text)))
    rows = tuple((Button(c.number, f"case:{c.id}"),) for c in mine[:8])
    return [Reply("\n".join(lines), buttons=rows)]


def _staff_case_reply(desk: Desk, actor: Actor, case: t.Case) -> Reply:
    card = lifecycle.case_card(desk.session, case, actor.lang, with_contact=True)
    buttons = tuple(
        tuple(Button(say(actor.lang, key), act) for key, act in row) for row in lifecycle.staff_buttons(case)
    )
    return Reply(card, buttons=buttons)


@dispatch.action("case", staff=True)
@dispatch.command("/case", staff=True)
def show_case(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    case = lifecycle.for_staff(desk.session, _case_id(arg), _person(actor))
    steps = [
        say(actor.lang, "case.history_line", at=when(actor.lang, ev.at), step=say(actor.lang, f"step.{ev.action}"),
            note=ev.note)
        for ev in lifecycle.history(desk.session, case)
    ]
    reply = _staff_case_reply(desk, actor, case)
    return [Reply(reply.text + "\n\n" + "\n".join(steps), buttons=reply.buttons)]


@dispatch.action("ack", staff=True)
@dispatch.command("/ack", "/acknowledge", "签收", "簽收", staff=True)
def acknowledge(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    case = lifecycle.for_staff(desk.session, _case_id(arg), _person(actor))
    lifecycle.acknowledge(desk.session, case, _person(actor), desk.now)
    return [Reply(say(actor.lang, "staff.acknowledged", number=case.number))]


@dispatch.action("trf", staff=True)
def transfer_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    ref, _, post_code = arg.partition(":")
    case = lifecycle.for_staff(desk.session, _case_id(ref), _person(actor))
    if not post_code:
        rows = tuple(
            (Button(p.name, f"trf:{case.id}:{p.code}"),)
            for p in directory.posts_of(desk.session, case.community_id)
            if p.id != case.post_id
        )
        return [Reply(say(actor.lang, "staff.pick_post", number=case.number), buttons=rows)]
    directory.post_by_code(desk.session, case.community_id, post_code)
    desk.expect(actor.channel, actor.address, "transfer", case=case.id, post=post_code)
    return [Reply(say(actor.lang, "staff.ask_transfer_note", number=case.number), expects_text=True)]


@dispatch.command("/transfer", "转办", "轉辦", staff=True)
def transfer_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    parts = arg.split(" ", 2)
    if len(parts) < 2:
        return transfer_button(desk, actor, parts[0] if parts else "")
    return _transfer(desk, actor, parts[0], parts[1], parts[2] if len(parts) > 2 else "")


@dispatch.pending("transfer")
def transfer_text(desk: Desk, actor: Actor, pending: dict[str, Any], text: str) -> list[Reply]:
    return _transfer(desk, actor, str(pending["case"]), str(pending["post"]), text)


def _transfer(desk: Desk, actor: Actor, ref: str, post_code: str, note: str) -> list[Reply]:
    case = lifecycle.for_staff(desk.session, _case_id(ref), _person(actor))
    lifecycle.transfer(desk.session, case, _person(actor), post_code, note, desk.now)
    post = directory.post_by_code(desk.session, case.community_id, post_code)
    return [Reply(say(actor.lang, "staff.transferred", number=case.number, post=post.name))]


@dispatch.action("rcl", staff=True)
def reclassify_button(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    """rcl:N offers the categories (and the other kind); rcl:N:kind:category corrects the reading."""
    ref, _, rest = arg.partition(":")
    kind, _, category = rest.partition(":")
    if kind and category:
        return _reclassify(desk, actor, ref, kind, category)
    case = lifecycle.for_staff(desk.session, _case_id(ref), _person(actor))
    rows = [(Button(c.name, f"rcl:{case.id}:{case.kind}:{c.code}"),)
            for c in corrections.categories_of(desk.session, case.community_id) if c.code != case.category]
    rows += [(Button(say(actor.lang, f"kind.{k}"), f"rcl:{case.id}:{k}:{case.category}"),)
             for k in lifecycle.CASE_KINDS if k != case.kind]
    return [Reply(say(actor.lang, "staff.pick_reading", number=case.number), buttons=tuple(rows))]


@dispatch.command("/reclassify", "改分类", "改分類", staff=True)
def reclassify_command(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    """/reclassify N kind category, or /reclassify N category (kind kept), or /reclassify N (buttons)."""
    parts = arg.split()
    if len(parts) < 2:
        return reclassify_button(desk, actor, parts[0] if parts else "")
    if len(parts) == 2:
        case = lifecycle.for_staff(desk.session, _case_id(parts[0]), _person(actor))
        return _reclassify(desk, actor, parts[0], case.kind, parts[1])
    return _reclassify(desk, actor, parts[0], parts[1], parts[2])


def _reclassify(desk: Desk, actor: Actor, ref: str, kind: str, category: str) -> list[Reply]:
    case = lifecycle.for_staff(desk.session, _case_id(ref), _person(actor))
    post_before = case.post_id
    lifecycle.reclassify(desk.session, case, _person(actor), kind, category, desk.now)
    cat = directory.category(desk.session, case.community_id, case.category)
    text = say(actor.lang, "staff.reclassified", number=case.number, kind=say(actor.lang, f"kind.{case.kind}"),
               category=cat.name if cat else case.category)
    if case.post_id != post_before:
        post = desk.session.get(t.Post, case.post_id)
        text += "\n" + say(actor.lang, "staff.transferred", number=case.number, post=post.name if post else "")
    return [Reply(text)]


@dispatch.command("/posts", staff=True)
def list_posts(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    posts = directory.posts_of(desk.session, _person(actor).community_id)
    return [Reply("\n".join(f"{p.code}  {p.name}" for p in posts))]


# --------------------------------------------------------------------------- steps that take a text


def _text_step(*, prefix: str, commands: tuple[str, ...], what: str, staff: bool, ask: str,
               done: str, apply: Callable[[Desk, Actor, t.Case, str], object]) -> None:
    """Register a step on a case that needs a text (a reply, a note, a reason).

    Its button asks for the text; its command carries it (`/reply N text`) or asks when it does
    not; the next message answers the prompt. Staff reach only cases they may handle, residents
    only their own.
    """

    def find(desk: Desk, actor: Actor, ref: str) -> t.Case:
        if staff:
            return lifecycle.for_staff(desk.session, _case_id(ref), _person(actor))
        return lifecycle.for_resident(desk.session, _case_id(ref), _resident(actor))

    def ask_for_text(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
        case = find(desk, actor, _case_id(arg))
        desk.expect(actor.channel, actor.address, what, case=case.id)
        return [Reply(say(actor.lang, ask, number=case.number), expects_text=True)]

    def carry_out(desk: Desk, actor: Actor, ref: str, text: str) -> list[Reply]:
        case = find(desk, actor, ref)
        apply(desk, actor, case, text)
        return [Reply(say(actor.lang, done, number=case.number))]

    dispatch.text_step(prefix=prefix, commands=commands, what=what, key="case", staff=staff,
                       ask=ask_for_text, carry_out=carry_out)


_text_step(
    prefix="add", commands=("/add", "补充", "補充"), what="add", staff=False,
    ask="case.ask_info", done="case.info_added",
    apply=lambda desk, actor, case, text: lifecycle.add_info(
        desk.session, case, _resident(actor), text, desk.now, actor.attachments),
)
_text_step(
    prefix="reo", commands=("/reopen", "重新办理", "重新辦理"), what="reopen", staff=False,
    ask="case.ask_reopen_reason", done="case.reopened_ack",
    apply=lambda desk, actor, case, text: lifecycle.reopen(desk.session, case, _resident(actor), text, desk.now),
)
_text_step(
    prefix="rep", commands=("/reply", "答复", "答覆"), what="reply", staff=True,
    ask="staff.ask_reply", done="staff.replied",
    apply=lambda desk, actor, case, text: lifecycle.reply(desk.session, case, _person(actor), text, desk.now),
)
_text_step(
    prefix="res", commands=("/resolve", "办结", "辦結"), what="resolve", staff=True,
    ask="staff.ask_resolve_note", done="staff.resolved",
    apply=lambda desk, actor, case, text: lifecycle.resolve(desk.session, case, _person(actor), text, desk.now),
)
_text_step(
    prefix="ret", commands=("/return", "退单", "退單"), what="return", staff=True,
    ask="staff.ask_return_reason", done="staff.returned",
    apply=lambda desk, actor, case, text: lifecycle.return_case(
        desk.session, case, _person(actor), text, desk.now),
)
