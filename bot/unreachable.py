"""What follows a notice a channel refused as unreachable, the same for every channel.

Telegram (403: blocked, never started; "chat not found"), the Official Account (40003: not a
follower's openid) and WeCom (81013, or `invaliduser` in an `errcode 0` answer) each tell the
outbox that the recipient cannot be reached there. The outbox sender then, in the transaction
that marks the notice unreachable:

- marks the identity unreachable with the channel's reason, so no later notice tries it until
  the person writes there again (the dead-notice list and /dead show it);
- queues the same notice again on the recipient's next reachable channel: a staff member's
  order (`handlers.notify.staff_order`), a resident's `CHANNEL_PREFERENCE`;
- when no channel is left but the web inbox, which reaches nobody until they look, and the
  notice belongs to a case its recipient holds and has yet to acknowledge, moves the case up its
  chain at once instead (`handlers.watch.escalation.escalate_unreachable`, as the acknowledge
  deadline would). A second refused card of the same case finds it moved already and waits in
  the web inbox; the escalation's notices are deduplicated on the refused notice's id.

Anything else left with only the web inbox waits there.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from handlers.notify import WEB_INBOX, address_of
from handlers.watch import escalation
from storage import outbox
from storage import tables as t


def refused_identity(session: Session, row: t.Outbox) -> t.Identity | None:
    """The identity the notice was sent to: its own, else the one of its channel and address
    (a reply queued before the sender knew it)."""
    if row.identity_id is not None:
        return session.get(t.Identity, row.identity_id)
    return session.scalars(select(t.Identity).where(
        col(t.Identity.channel) == row.channel, col(t.Identity.address) == row.address)).first()


def mark_identity_unreachable(session: Session, row: t.Outbox, reason: str) -> None:
    ident = refused_identity(session, row)
    if ident is not None:
        ident.reachable = False
        ident.unreachable_reason = reason[:200]


def reach_elsewhere(session: Session, row: t.Outbox, now: dt.datetime, policy: escalation.WatchPolicy) -> str:
    """After `row` was refused as unreachable and its identity marked so: queue it on the
    recipient's next channel, or move its case up when only the web inbox is left. In the
    caller's transaction; returns what was done, for the log."""
    person = session.get(t.Person, row.person_id) if row.person_id is not None else None
    resident = session.get(t.Resident, row.resident_id) if person is None and row.resident_id is not None else None
    if person is None and resident is None:
        return "no one to reach elsewhere"
    session.flush()  # the identity just marked unreachable is not chosen again
    elsewhere = address_of(session, now, person=person, resident=resident)
    if (elsewhere.channel, elsewhere.address) == (row.channel, row.address):
        return "no other channel"  # an identity not bound to the recipient: nothing to move
    if elsewhere.channel == WEB_INBOX and person is not None and row.case_id is not None:
        moved = escalation.escalate_unreachable(session, row.case_id, person.id or 0, now, policy,
                                                origin=f"unreachable:{row.id}")
        if moved is not None:
            return f"case {row.case_id} went up: {moved}"
    outbox.enqueue(session, channel=elsewhere.channel, address=elsewhere.address, text=row.text, now=now,
                   buttons=row.buttons, identity_id=elsewhere.id, person_id=row.person_id,
                   resident_id=row.resident_id, case_id=row.case_id, topic=row.topic, media=row.media or (),
                   delivered=elsewhere.channel == WEB_INBOX)
    return f"queued again on {elsewhere.channel}"
