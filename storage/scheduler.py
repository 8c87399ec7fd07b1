"""Claiming due work safely when several processes run the scheduler against one database.

The deadline watch keeps what it must do as `DueAction` rows (storage/tables.py). Three
guarantees make each action happen once, however many schedulers run and whenever they die:

- A due action is recorded under a UNIQUE `key`; planning inserts with ON CONFLICT DO NOTHING,
  so two planners produce one row.
- A scheduler performs an action inside one transaction that also flips the row from `pending`
  to `done` (or `skipped`) and writes the case event and the outbox notices. `claim` is that
  flip's guard: on PostgreSQL it locks the row with FOR UPDATE SKIP LOCKED (a row another
  scheduler is working on is skipped, not waited for; once that one commits, the row is no longer
  pending); on SQLite, writers are serialised by the database lock and the conditional UPDATE
  re-checks `state = 'pending'` under it. A crash before commit leaves the row pending for the
  next tick; a crash after commit leaves it done, its notices already in the outbox.
- Planning (reading new case events into due actions) takes a transaction-level advisory lock on
  PostgreSQL, so one planner works at a time and the others move straight on to due work.

Row locks were chosen over one global advisory lock for the due work so that several schedulers
share a large backlog instead of queueing behind one of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session
from sqlmodel import col

from storage.db import is_postgresql, upsert_insert
from storage.tables import DueAction, DueActionState, WatchCursor

# The advisory lock key of the planner ("griddesk-plan" folded to a bigint).
PLANNER_LOCK = 0x67726964706C616E
INSERT_CHUNK = 2000


@dataclass(frozen=True)
class Planned:
    """A due action to record (its key makes it once-only)."""

    key: str
    kind: str
    due_at: dt.datetime
    case_id: int | None = None
    person_id: int | None = None
    ref_at: dt.datetime | None = None


def record(session: Session, planned: Iterable[Planned], now: dt.datetime) -> int:
    """Insert due actions that are not recorded yet; returns how many rows were offered."""
    rows = [
        {
            "key": p.key,
            "kind": p.kind,
            "case_id": p.case_id,
            "person_id": p.person_id,
            "ref_at": p.ref_at,
            "due_at": p.due_at,
            "state": DueActionState.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "outcome": "",
        }
        for p in planned
    ]
    # Sorted keys: concurrent planners insert in the same order and cannot deadlock.
    rows.sort(key=lambda r: str(r["key"]))
    # One compiled statement executed for many parameter sets (not a giant VALUES list, which
    # costs more to compile than to run).
    # SQLModel sets `__table__` on table models without declaring it.
    table = DueAction.__table__  # type: ignore[attr-defined]
    stmt = upsert_insert(session, table).on_conflict_do_nothing(index_elements=["key"])
    for start in range(0, len(rows), INSERT_CHUNK):
        session.connection().execute(stmt, rows[start : start + INSERT_CHUNK])
    return len(rows)


def record_done(session: Session, planned: Planned, now: dt.datetime, outcome: str = "") -> bool:
    """Record an action as done right now; False when it was recorded before (by anyone).

    On PostgreSQL a second inserter of the same key waits for the first to commit and then finds
    the conflict, so only one transaction goes on to do the work.
    """
    stmt = (
        upsert_insert(session, DueAction)
        .values(
            key=planned.key,
            kind=planned.kind,
            case_id=planned.case_id,
            person_id=planned.person_id,
            ref_at=planned.ref_at,
            due_at=planned.due_at,
            state=DueActionState.DONE.value,
            attempts=1,
            created_at=now,
            done_at=now,
            outcome=outcome,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(DueAction.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def exists(session: Session, key: str) -> bool:
    return session.scalar(select(col(DueAction.id)).where(col(DueAction.key) == key)) is not None


def due_ids(session: Session, now: dt.datetime, limit: int) -> list[int]:
    """Ids of pending actions due at `now`, earliest first (an index range scan)."""
    stmt = (
        select(col(DueAction.id))
        .where(col(DueAction.state) == DueActionState.PENDING, col(DueAction.due_at) <= now)
        .order_by(col(DueAction.due_at), col(DueAction.id))
        .limit(limit)
    )
    return list(session.scalars(stmt))


def claim(session: Session, action_id: int, now: dt.datetime) -> DueAction | None:
    """Take one pending action for this transaction, or None when someone else has or had it."""
    if is_postgresql(session):
        locked = session.scalars(
            select(DueAction)
            .where(col(DueAction.id) == action_id, col(DueAction.state) == DueActionState.PENDING)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).first()
        if locked is None:
            return None
    result = session.execute(
        update(DueAction)
        .where(col(DueAction.id) == action_id, col(DueAction.state) == DueActionState.PENDING)
        .values(state=DueActionState.DONE.value, done_at=now, attempts=DueAction.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.scalars(
        select(DueAction)
        .where(col(DueAction.id) == action_id)
        .execution_options(populate_existing=True)
    ).one()


def finish(action: DueAction, state: DueActionState, outcome: str) -> None:
    action.state = state.value
    action.outcome = outcome[:500]


def note_failure(session: Session, action_id: int, error: str, max_attempts: int) -> None:
    """Count a failed attempt (in its own transaction); give up after `max_attempts`."""
    action = session.get(DueAction, action_id)
    if action is None or action.state != DueActionState.PENDING:
        return
    action.attempts += 1
    action.outcome = error[:500]
    if action.attempts >= max_attempts:
        action.state = DueActionState.FAILED.value


def try_planner_lock(session: Session) -> bool:
    """One planner at a time on PostgreSQL (released at the end of the transaction)."""
    if not is_postgresql(session):
        return True
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PLANNER_LOCK}))


def cursor(session: Session, name: str) -> int:
    row = session.get(WatchCursor, name)
    return row.last_id if row else 0


def advance(session: Session, name: str, last_id: int, now: dt.datetime) -> None:
    """Move the cursor forward (never back)."""
    stmt = upsert_insert(session, WatchCursor).values(name=name, last_id=last_id, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"],
        set_={"last_id": func.max(col(WatchCursor.last_id), last_id) if not is_postgresql(session)
              else func.greatest(col(WatchCursor.last_id), last_id), "updated_at": now},
    )
    session.execute(stmt)


def pending_count(session: Session) -> int:
    return session.scalar(
        select(func.count())
        .select_from(DueAction)
        .where(col(DueAction.state) == DueActionState.PENDING)
    ) or 0


def by_keys(session: Session, keys: Sequence[str]) -> list[DueAction]:
    return list(session.scalars(select(DueAction).where(col(DueAction.key).in_(list(keys)))))
