"""The deadline watch in chat: the overdue list, undelivered notices, one's own digest.

Directors: /overdue (超时工单) lists the community's overdue cases with who holds them;
/dead (未送达) lists notices marked dead or unreachable with the channel's reason, and the chat
accounts that can no longer be reached. Any staff member: /digest (今日待办) shows their digest now;
/figures (工单指标) shows the figures the centre is judged on (handlers/figures/tally.py): the director's
by community, committee, grid or worker, anyone else's their own.
"""

from __future__ import annotations

from handlers import dispatch
from handlers.cases import lifecycle
from handlers.conversation import Actor, Button, Reply
from handlers.desk import Desk
from handlers.errors import BadInput
from handlers.figures import tally
from handlers.registry import directory
from handlers.replies import say
from handlers.watch import escalation
from storage import tables as t

MAX_LISTED = 30


def _person(actor: Actor) -> t.Person:
    assert actor.person is not None
    return actor.person


def _directors_only(actor: Actor) -> list[Reply] | None:
    if not _person(actor).has_role("director"):
        return [Reply(say(actor.lang, "watch.directors_only"))]
    return None


@dispatch.command("/overdue", "超时工单", "超時工單", "overdue", staff=True)
def overdue(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    refused = _directors_only(actor)
    if refused:
        return refused
    person = _person(actor)
    community = directory.community(desk.session, person.community_id)
    late = escalation.overdue_cases(desk.session, person.community_id, desk.now)
    if not late:
        return [Reply(say(actor.lang, "watch.overdue_none"))]
    lines = [say(actor.lang, "watch.overdue_head", count=len(late))]
    lines += escalation.case_lines(desk.session, late[:MAX_LISTED], actor.lang, desk.now, community.timezone,
                                   with_holder=True)
    rows = tuple((Button(c.number, f"case:{c.id}"),) for c in late[:8])
    return [Reply("\n".join(lines), buttons=rows)]


@dispatch.command("/dead", "未送达", "未送達", "undelivered", staff=True)
def dead(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    refused = _directors_only(actor)
    if refused:
        return refused
    person = _person(actor)
    community = directory.community(desk.session, person.community_id)
    found = escalation.dead_notices(desk.session, person.community_id, actor.lang, limit=MAX_LISTED)
    lines = [say(actor.lang, "watch.dead_head", count=len(found)) if found else say(actor.lang, "watch.dead_none")]
    lines += escalation.dead_lines(found, actor.lang, community.timezone)
    unreachable = escalation.unreachable_recipients(desk.session, person.community_id, actor.lang)
    if unreachable:
        lines.append(say(actor.lang, "watch.unreachable_head"))
        lines += [say(actor.lang, "watch.unreachable_line", name=n, channel=c, reason=r)
                  for n, c, r in unreachable[:MAX_LISTED]]
    return [Reply("\n".join(lines))]


@dispatch.command("/digest", "今日待办", "今日待辦", "digest", staff=True)
def digest(desk: Desk, actor: Actor, _arg: str) -> list[Reply]:
    text = escalation.digest_text(desk.session, _person(actor), desk.now, actor.lang)
    if text is None:
        return [Reply(say(actor.lang, "watch.digest_empty"))]
    mine = lifecycle.open_for_person(desk.session, _person(actor))
    return [Reply(text, buttons=tuple((Button(c.number, f"case:{c.id}"),) for c in mine[:8]))]


@dispatch.command("/figures", "工单指标", "工單指標", "figures", staff=True)
def show_figures(desk: Desk, actor: Actor, arg: str) -> list[Reply]:
    person = _person(actor)
    today = directory.calendar_of(directory.community(desk.session, person.community_id)).local_date(desk.now)
    try:
        by, start, end = tally.read_request(arg, today)
    except BadInput:
        return [Reply(say(actor.lang, "figures.usage"))]
    report = tally.for_staff(desk.session, person, start, end, by, desk.now)
    return [Reply(tally.render(report, actor.lang))]
