"""Gap-free counters and per-owner event sequence numbers, safe under concurrent writers."""

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


def next_event_seq(session: Session, owner_column: Any, owner_id: int | None, seq_column: Any) -> int:
    """The next sequence number of an append-only history (a unique (owner, seq) guards races)."""
    last = session.scalar(select(func.max(seq_column)).where(owner_column == owner_id))
    return int(last or 0) + 1
