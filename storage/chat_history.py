"""A conversation's history for a channel that keeps none of its own (the web chat).

An item is a line the person sent ("said"), a direct reply to it ("reply") or a delivered
notice from the outbox ("notice"). Lines and notices come from two tables, so items are ordered
by (time, lines before notices, id): the lines of a turn and the notices written in the same
transaction share one timestamp, and the person saw the turn's replies before any notice it
caused. A page is addressed by the item just after it (`before`), not by an offset, so new
items arriving while someone scrolls back do not shift the pages.

A turn sent with the page's own id (`client_id`) can be found again: a retry of it is answered
with the replies already stored (`answered_turn`) instead of being handled a second time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.sequences import queue_insert
from storage.tables import ChatLine, Outbox, OutboxState

KINDS = ("said", "reply", "notice")
Buttons = list[list[dict[str, str]]]


@dataclass(frozen=True)
class Item:
    kind: str
    id: int
    text: str
    buttons: Buttons
    at: dt.datetime
    action: str = ""  # of "said": the button pressed, "" when typed

    @property
    def key(self) -> tuple[dt.datetime, int, int]:
        return (self.at, int(self.kind == "notice"), self.id)


@dataclass(frozen=True)
class Page:
    items: list[Item]  # oldest first
    more: bool  # older items exist before the first one
    last_notice_id: int  # the newest delivered notice of the address, 0 when none


def record_turn(
    session: Session,
    *,
    channel: str,
    address: str,
    said: str,
    action: str,
    replies: Sequence[tuple[str, Buttons]],
    now: dt.datetime,
    client_id: str | None = None,
) -> None:
    """Add what the person sent and the replies it got, in the caller's transaction.

    With a `client_id`, the unique index on (channel, address, client_id) makes the commit of a
    second turn with the same id fail, so a retry that raced the first one files nothing.
    """
    line = {"channel": channel, "address": address, "created_at": now}
    queue_insert(session, ChatLine, {**line, "direction": "in", "text": said, "action": action,
                                     "client_id": client_id, "buttons": []})
    for text, buttons in replies:
        queue_insert(session, ChatLine, {**line, "direction": "out", "text": text, "action": "",
                                         "client_id": None, "buttons": buttons})


def answered_turn(session: Session, *, channel: str, address: str,
                  client_id: str) -> list[tuple[str, Buttons]] | None:
    """The replies stored for the turn the address sent with `client_id`, in the order they were
    given; None when no such turn was committed.

    A turn's lines share its timestamp and were added in order (the line sent, then its
    replies), so the replies are the "out" lines after it with the same time, up to the next
    line sent (turns of one address are served one at a time).
    """
    said = session.scalars(select(ChatLine).where(
        col(ChatLine.channel) == channel, col(ChatLine.address) == address,
        col(ChatLine.client_id) == client_id, col(ChatLine.direction) == "in")).first()
    if said is None:
        return None
    replies = []
    for line in session.scalars(
            select(ChatLine)
            .where(col(ChatLine.channel) == channel, col(ChatLine.address) == address,
                   col(ChatLine.created_at) == said.created_at, col(ChatLine.id) > said.id)
            .order_by(col(ChatLine.id))):
        if line.direction == "in":
            break
        replies.append((line.text, line.buttons))
    return replies


def read_page(
    session: Session,
    *,
    channel: str,
    address: str,
    before: tuple[str, int] | None = None,
    limit: int = 50,
) -> Page:
    """The newest `limit` items of the address older than item `before` (kind, id).

    LookupError when `before` is not an item of this address.
    """
    # Read first and bound the notices by it: a notice delivered while this runs then has a
    # larger id and reaches the caller through the inbox, instead of through neither.
    last = session.scalar(
        select(func.max(col(Outbox.id))).where(*_delivered(channel, address))) or 0
    lines = select(ChatLine).where(col(ChatLine.channel) == channel,
                                   col(ChatLine.address) == address)
    notices = select(Outbox).where(*_delivered(channel, address), col(Outbox.id) <= last)
    if before is not None:
        key = _position(session, channel, address, *before)
        lines = lines.where(_older(ChatLine.created_at, ChatLine.id, 0, key))
        notices = notices.where(_older(Outbox.created_at, Outbox.id, 1, key))
    # One more than asked from each side tells whether anything older is left.
    items = [
        Item("said" if r.direction == "in" else "reply", r.id or 0, r.text, r.buttons, r.created_at, r.action)
        for r in session.scalars(
            lines.order_by(col(ChatLine.created_at).desc(), col(ChatLine.id).desc())
            .limit(limit + 1))
    ] + [
        Item("notice", r.id or 0, r.text, r.buttons, r.created_at)
        for r in session.scalars(
            notices.order_by(col(Outbox.created_at).desc(), col(Outbox.id).desc())
            .limit(limit + 1))
    ]
    items.sort(key=lambda i: i.key)
    return Page(items=items[-limit:], more=len(items) > limit, last_notice_id=last)


def pressed_later(session: Session, *, channel: str, address: str, items: Sequence[Item]) -> set[tuple[str, int, str]]:
    """(kind, id, action) of each button among `items` that the address pressed after the item
    that carried it: such a button was answered, whatever page the press is on."""
    actions = {b["action"] for i in items for row in i.buttons for b in row if b.get("action")}
    if not actions:
        return set()
    presses = [(at, 0, ident, action) for ident, at, action in session.execute(
        select(col(ChatLine.id), col(ChatLine.created_at), col(ChatLine.action))
        .where(col(ChatLine.channel) == channel, col(ChatLine.address) == address,
               col(ChatLine.direction) == "in", col(ChatLine.action).in_(sorted(actions))))]
    found = set()
    for item in items:
        for row in item.buttons:
            for b in row:
                if any(action == b.get("action") and (at, rank, ident) > item.key
                       for at, rank, ident, action in presses):
                    found.add((item.kind, item.id, b["action"]))
    return found


def _delivered(channel: str, address: str) -> tuple[Any, ...]:
    """The notices that the inbox shows: those the sender has marked sent."""
    return (col(Outbox.channel) == channel, col(Outbox.address) == address,
            col(Outbox.state) == OutboxState.SENT)


def _position(session: Session, channel: str, address: str, kind: str,
              ident: int) -> tuple[dt.datetime, int, int]:
    at: dt.datetime | None = None
    if kind == "notice":
        at = session.scalar(select(col(Outbox.created_at)).where(
            col(Outbox.id) == ident, *_delivered(channel, address)))
    elif kind in KINDS:
        at = session.scalar(select(col(ChatLine.created_at)).where(
            col(ChatLine.id) == ident, col(ChatLine.channel) == channel,
            col(ChatLine.address) == address))
    if at is None:
        raise LookupError(f"{kind}:{ident} is not in this conversation")
    return (at, int(kind == "notice"), ident)


def _older(at_col: Any, id_col: Any, rank: int, key: tuple[dt.datetime, int, int]) -> Any:
    """Rows of one source (rank 0 lines, 1 notices) ordered before `key`."""
    at, key_rank, key_id = key
    if rank < key_rank:
        return at_col <= at
    if rank > key_rank:
        return at_col < at
    return or_(at_col < at, and_(at_col == at, id_col < key_id))
