"""The transactional outbox: notices are rows written with the change that causes them.

A sender (bot/sender.py) claims due rows, sends them through their channel and marks them. A
crash between commit and send loses nothing (the row is still pending); a sender killed between
send and mark repeats, once its lease runs out, the notices it had claimed and not yet marked (at
most one claimed batch), and never loses one: delivery is at least once.

Several senders may drain one database. Claiming takes a lease: the claim transaction moves the
row's `next_attempt_at` to `now + lease` and commits before anything is sent, so no other sender
sees the row as due while it is in flight; marking it afterwards ends the lease. A sender that
dies mid-send leaves the row to be retried when the lease runs out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.db import is_postgresql
from storage.sequences import queue_insert
from storage.tables import Outbox, OutboxState
from storage.unit_of_work import transaction_memo

# Noted in the transaction's memo when it queues a notice that a sender must send.
_QUEUED_PENDING = "outbox_queued_pending"


def enqueue(
    session: Session,
    *,
    channel: str,
    address: str,
    text: str,
    now: dt.datetime,
    buttons: Sequence[Sequence[dict[str, str]]] = (),
    identity_id: int | None = None,
    resident_id: int | None = None,
    person_id: int | None = None,
    case_id: int | None = None,
    topic: str = "",
    dedupe_key: str | None = None,
    media: Sequence[int] = (),
    delivered: bool = False,
) -> None:
    """Queue a notice, written at the transaction's next flush or its commit with the other
    notices of the transaction (storage.sequences.queue_insert); `delivered` writes it as sent,
    for a channel that the stored row itself delivers (an inbox read from this table): no sender
    needs to touch it."""
    if not delivered:
        transaction_memo(session)[_QUEUED_PENDING] = True
    queue_insert(session, Outbox, {
        "channel": channel, "address": address, "identity_id": identity_id, "resident_id": resident_id,
        "person_id": person_id, "case_id": case_id, "topic": topic, "text": text,
        "buttons": [list(r) for r in buttons], "media": list(media), "dedupe_key": dedupe_key,
        "state": OutboxState.SENT.value if delivered else OutboxState.PENDING.value,
        "attempts": 1 if delivered else 0, "sent_at": now if delivered else None,
        "next_attempt_at": now, "created_at": now, "last_error": "",
    })


def queued_pending(session: Session) -> bool:
    """Whether the session's transaction has queued a notice for a sender, so that its commit is
    worth waking one (a sender looking for nothing still costs a claim round trip)."""
    return bool(transaction_memo(session).get(_QUEUED_PENDING))


def claim_due(
    session: Session,
    *,
    channels: Sequence[str],
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta | None = None,
) -> list[Outbox]:
    """Due rows in per-recipient order, locked against other senders where the database can.

    Only the oldest pending row of each recipient is eligible, so one recipient's notices go out
    in the order they were written even when an earlier one is waiting for a retry.

    With a `lease`, each returned row has been moved to `now + lease` by a conditional UPDATE
    that re-checks it is still pending and due: on PostgreSQL the rows are also locked with
    FOR UPDATE SKIP LOCKED, on SQLite the UPDATE runs under the database's single writer lock,
    so of two senders that read the same row only one gets it. Commit before sending.
    """
    oldest = (
        select(col(Outbox.channel), col(Outbox.address), func.min(col(Outbox.id)).label("first_id"))
        .where(col(Outbox.state) == OutboxState.PENDING, col(Outbox.channel).in_(channels))
        .group_by(col(Outbox.channel), col(Outbox.address))
        .subquery()
    )
    stmt = (
        select(Outbox)
        .join(oldest, and_(col(Outbox.id) == oldest.c.first_id))
        .where(col(Outbox.next_attempt_at) <= now)
        .order_by(col(Outbox.next_attempt_at), col(Outbox.id))
        .limit(limit)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True, of=Outbox)
    rows = list(session.scalars(stmt))
    if lease is None:
        return rows
    if not rows:
        return []
    # One conditional UPDATE for the batch: only the rows still pending and due move.
    moved = set(session.scalars(
        update(Outbox)
        .where(
            col(Outbox.id).in_([row.id for row in rows]),
            col(Outbox.state) == OutboxState.PENDING,
            col(Outbox.next_attempt_at) <= now,
        )
        .values(next_attempt_at=now + lease)
        .returning(col(Outbox.id))
        .execution_options(synchronize_session=False)
    ))
    return [row for row in rows if row.id in moved]


def mark_sent(session: Session, row: Outbox, now: dt.datetime) -> None:
    row.state = OutboxState.SENT
    row.sent_at = now
    row.attempts += 1
    row.last_error = ""


def mark_retry(session: Session, row: Outbox, now: dt.datetime, delay: dt.timedelta, error: str,
               max_attempts: int) -> None:
    row.attempts += 1
    row.last_error = error[:500]
    if row.attempts >= max_attempts:
        row.state = OutboxState.DEAD
    else:
        row.next_attempt_at = now + delay


def mark_unreachable(session: Session, row: Outbox, now: dt.datetime, error: str) -> None:
    row.attempts += 1
    row.state = OutboxState.UNREACHABLE
    row.last_error = error[:500]


def postpone_recipient(session: Session, channel: str, address: str, until: dt.datetime) -> None:
    """Hold every pending row of a recipient until `until` (a per-chat rate limit, a 429)."""
    session.execute(
        update(Outbox)
        .where(
            col(Outbox.channel) == channel,
            col(Outbox.address) == address,
            col(Outbox.state) == OutboxState.PENDING,
            col(Outbox.next_attempt_at) < until,
        )
        .values(next_attempt_at=until)
    )


def release_recipient(session: Session, channel: str, address: str, now: dt.datetime,
                      beyond: dt.timedelta = dt.timedelta(hours=1)) -> int:
    """Make a recipient's held pending rows due now (they wrote again, so a channel that needs
    their interaction, such as WeChat's 48-hour window, can deliver them); returns how many.

    Only rows held further than `beyond` are touched: a sender's lease on a row it is sending,
    or a short retry backoff, must not be cut short (that could send a notice twice).
    """
    result = session.execute(
        update(Outbox)
        .where(
            col(Outbox.channel) == channel,
            col(Outbox.address) == address,
            col(Outbox.state) == OutboxState.PENDING,
            col(Outbox.next_attempt_at) > now + beyond,
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
