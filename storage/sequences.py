"""Counters and per-owner event histories, safe under concurrent writers."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import bindparam, event, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from storage.db import autocommit_engine, is_postgresql, upsert_insert
from storage.unit_of_work import transaction_memo

_QUEUED = "inserts:queued"


def next_in_counter(session: Session, table: Any, *, at_once: bool = False, **key: Any) -> int:
    """Increment the counter row of `table` identified by `key` (created at 1) and return it.

    One INSERT … ON CONFLICT DO UPDATE … RETURNING statement, so two writers never get the
    same number; `table` has a unique constraint over the key columns and an int `last`.

    `at_once`, on PostgreSQL: the statement commits at once on a connection of its own, from a
    pool of its own (storage.db.autocommit_engine). In the session's transaction the counter
    row would stay locked until that transaction ends, and every other writer of the counter
    (every case of a community's day, in every process) would queue behind the whole of it.
    The price: a transaction that fails after taking a number leaves that number unused.
    SQLite lets one writer in at a time anyway, and a second connection would wait for the
    session's own write lock: there the counter is always in the session's transaction.
    """
    stmt = _counter_statement(session, table, tuple(key))
    bind = session.get_bind()
    # A session bound to a connection (a transaction someone else ends) keeps the counter in it.
    if not (at_once and is_postgresql(session) and isinstance(bind, Engine)):
        return int(session.execute(stmt, key).scalar_one())
    return _at_once(autocommit_engine(bind), stmt, key)


_STATEMENTS: dict[tuple[str, Any, tuple[str, ...]], Any] = {}


def _counter_statement(session: Session, table: Any, columns: tuple[str, ...]) -> Any:
    """The counter's upsert with its key as bound parameters, built once per dialect, table and
    key (building a statement costs more than running a cached one)."""
    cache_key = (session.get_bind().dialect.name, table, columns)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is None:
        stmt = _STATEMENTS[cache_key] = (
            upsert_insert(session, table)
            .values(**{c: bindparam(c) for c in columns}, last=1)
            .on_conflict_do_update(index_elements=list(columns), set_={"last": table.last + 1})
            .returning(table.last)
        )
    return stmt


def _at_once(engine: Engine, stmt: Any, key: dict[str, Any]) -> int:
    """Run the counter's statement on a connection of `engine` (AUTOCOMMIT, not pinged before
    use): a connection the server has closed fails the first try, which invalidates the pool's
    idle connections, and the statement is sent once more on a new one. (Had the first try
    counted before the connection broke, that number stays unused, as for any failed message.)"""
    for attempt in (1, 2):
        try:
            with engine.connect() as own:
                return int(own.execute(stmt, key).scalar_one())
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise
    raise AssertionError("unreachable")


def _last_seqs(session: Session, table: Any) -> dict[Any, int]:
    """The last `seq` given to each owner of `table` in this transaction."""
    seqs: dict[Any, int] = transaction_memo(session).setdefault(f"seq:{table.__tablename__}", {})
    return seqs


def new_history(session: Session, table: Any, owner_id: int | None) -> None:
    """The owner was inserted in this transaction: its history starts at 1, without a read."""
    _last_seqs(session, table)[owner_id] = 0


def append_event(session: Session, table: Any, owner: str, owner_id: int | None, *, at: Any,
                 action: str, person: Any = None, resident: Any = None, note: str = "",
                 data: dict[str, Any] | None = None) -> None:
    """Add the next row of an append-only history (case or proposal events).

    `table` has an `owner` column, a `seq` numbered from 1 per owner, and the actor columns;
    the unique (owner, seq) constraint turns a race between two writers into an error for one
    of them instead of two rows with one number.

    The owner's last number is read once per transaction (not at all for an owner inserted in
    it: `new_history`) and counted on from there; the rows wait for the next flush or the
    commit and go to the database together, in one executemany. They are queued as plain
    values, not as model objects: nothing reads an event back in the transaction that wrote it,
    and building a validated model object per event cost more than inserting it.
    """
    seqs = _last_seqs(session, table)
    last = seqs.get(owner_id)
    if last is None:
        last = int(session.scalar(select(func.max(table.seq)).where(getattr(table, owner) == owner_id)) or 0)
    seqs[owner_id] = last + 1
    queue_insert(session, table, {
        owner: owner_id, "seq": last + 1, "at": at, "action": action,
        "actor_person_id": person.id if person else None,
        "actor_resident_id": resident.id if resident else None, "note": note, "data": data or {},
    })


def queue_insert(session: Session, table: Any, values: dict[str, Any]) -> None:
    """Insert a row into `table` at the session's next flush or at its commit, with the other
    rows queued for the table in one executemany: for rows that nothing reads back or refers
    to in the transaction that writes them (history events, notices, chat lines).

    Plain values, not model objects: building a validated model object and having the unit
    of work track it cost more than inserting it. `values` names every column without a
    database default (a JSON column's model default is not the table's). A SAVEPOINT rolled
    back forgets the rows queued in it (storage.unit_of_work). A unique constraint such a row
    breaks fails the flush or the commit that writes it. SQLAlchemy skips a flush that has no
    model object to write, and these rows with it: a query of the same transaction finds them
    only after a flush that wrote something else, so nothing should look for them there.
    """
    queued: dict[Any, list[dict[str, Any]]] = transaction_memo(session).setdefault(_QUEUED, {})
    queued.setdefault(table, []).append(values)


def _write_queued(session: Session) -> None:
    """The rows queued since the last flush, one executemany per table and set of columns (no
    id is read back), tables in the order they were first queued."""
    queued: dict[Any, list[dict[str, Any]]] = transaction_memo(session).pop(_QUEUED, {})
    if not queued:
        return
    # Core statements on the session's connection: the ORM's execution layer has nothing to add.
    connection = session.connection()
    for table, rows in queued.items():
        for _, same in itertools.groupby(rows, key=lambda row: row.keys()):
            connection.execute(_insert_of(table), list(same))


# Built once per table: building an INSERT costs more than running a cached one.
_INSERTS: dict[Any, Any] = {}


def _insert_of(table: Any) -> Any:
    stmt = _INSERTS.get(table)
    if stmt is None:
        stmt = _INSERTS[table] = insert(table.__table__)
    return stmt


@event.listens_for(Session, "before_flush")
def _write_before_flush(session: Session, _flush: Any, _instances: Any) -> None:
    _write_queued(session)


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    _write_queued(session)
