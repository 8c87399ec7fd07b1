"""Gap-free counters and per-owner event histories, safe under concurrent writers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def next_in_counter(session: Session, table: Any, **key: Any) -> int:
    """Increment the counter row of `table` identified by `key` (created at 1) and return it.

    One INSERT … ON CONFLICT DO UPDATE … RETURNING statement, so two writers never get the
    same number; `table` has a unique constraint over the key columns and an int `last`.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(table)
        .values(**key, last=1)
        .on_conflict_do_update(index_elements=list(key), set_={"last": table.last + 1})
        .returning(table.last)
    )
    return int(session.execute(stmt).scalar_one())


def append_event(session: Session, table: Any, owner: str, owner_id: int | None, *, at: Any,
                 action: str, person: Any = None, resident: Any = None, note: str = "",
                 data: dict[str, Any] | None = None) -> Any:
    """Add the next row of an append-only history (case or proposal events) and return it.

    `table` has an `owner` column, a `seq` numbered from 1 per owner, and the actor columns;
    the unique (owner, seq) constraint turns a race between two writers into an error for one
    of them instead of two rows with one number.
    """
    last = session.scalar(select(func.max(table.seq)).where(getattr(table, owner) == owner_id))
    row = table(**{owner: owner_id}, seq=int(last or 0) + 1, at=at, action=action,
                actor_person_id=person.id if person else None,
                actor_resident_id=resident.id if resident else None, note=note, data=data or {})
    session.add(row)
    return row
