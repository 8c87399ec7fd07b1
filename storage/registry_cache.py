"""The registry, read once per process and shared read-only, kept fresh by a version number.

Communities, committees, grids, buildings, people, leave, posts, the duty roster and categories
change only when a registry is loaded (or WeCom members are bound), yet every message needs some
of them. Each process keeps a `Snapshot`: every row of those tables as plain, immutable column
values. A transaction that writes any of them bumps the one-row `registry_version` in the same
transaction (whichever code writes: the ORM's flush and its bulk UPDATE/DELETE are watched
here), and each unit of work reads that version once (`note_version` takes it from a query
that was made anyway), so another process's change is seen at the next message.

A snapshot holds no ORM object: handlers.registry.directory turns its values into rows of the caller's
own session. Snapshots are per engine, so two services on one database in one process behave
like two processes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql.selectable import ScalarSelect
from sqlmodel import col

from storage import tables as t
from storage.sequences import next_in_counter
from storage.unit_of_work import transaction_memo

REGISTRY_TABLES: tuple[type[Any], ...] = (
    t.Community, t.Committee, t.Grid, t.Building, t.Person, t.Leave, t.Post, t.DutyDay, t.Category)
Row = Mapping[str, Any]
T = TypeVar("T")
_VERSION, _SNAPSHOT, _CHANGED = "registry:version", "registry:snapshot", "registry:changed"


@dataclass(frozen=True)
class Snapshot:
    """Every registry row, by table and id, as read at `version` (-1: read inside the
    transaction that is changing the registry, never shared)."""

    version: int
    rows: Mapping[type[Any], Mapping[int, Row]]
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def of(self, table: type[Any]) -> Mapping[int, Row]:
        return self.rows[table]

    def derived(self, key: str, build: Callable[[Snapshot], T]) -> T:
        """A value computed from this snapshot (an index, a routing table), built once."""
        with self._lock:
            if key not in self._derived:
                self._derived[key] = build(self)
            value: T = self._derived[key]
            return value


def load(session: Session, version: int) -> Snapshot:
    rows = {}
    for table in REGISTRY_TABLES:
        found = session.execute(select(table.__table__)).mappings()  # type: ignore[attr-defined]
        rows[table] = MappingProxyType({r["id"]: MappingProxyType(dict(r)) for r in found})
    return Snapshot(version=version, rows=MappingProxyType(rows))


# --------------------------------------------------------------------------- the version


def version_column() -> ScalarSelect[Any]:
    """The registry's version as a column, for a query a message makes anyway (`note_version`)."""
    return select(col(t.RegistryVersion.last)).where(col(t.RegistryVersion.id) == 1).scalar_subquery()


def note_version(session: Session, version: int | None) -> None:
    """The version this transaction read (None: no row yet, version 0); spares its own read."""
    transaction_memo(session).setdefault(_VERSION, version or 0)


def _version(session: Session) -> int:
    memo = transaction_memo(session)
    if _VERSION not in memo:
        memo[_VERSION] = int(session.scalar(select(version_column())) or 0)
    return int(memo[_VERSION])


def bump(session: Session) -> None:
    """Give the registry a new version in the session's transaction (once per transaction)."""
    memo = transaction_memo(session)
    memo.pop(_SNAPSHOT, None)
    if not memo.get(_CHANGED):
        memo[_CHANGED] = True
        next_in_counter(session, t.RegistryVersion, id=1)


@event.listens_for(Session, "before_flush")
def _bump_on_flush(session: Session, _flush: UOWTransaction, _instances: object) -> None:
    changed = (*session.new, *session.deleted,
               *(o for o in session.dirty if session.is_modified(o, include_collections=False)))
    if any(isinstance(o, REGISTRY_TABLES) for o in changed):
        bump(session)


@event.listens_for(Session, "do_orm_execute")
def _bump_on_bulk_write(state: ORMExecuteState) -> None:
    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ in REGISTRY_TABLES:
        bump(state.session)


# --------------------------------------------------------------------------- the cache


class _Cache:
    def __init__(self) -> None:
        self.current: Snapshot | None = None
        self.lock = threading.Lock()


_caches: weakref.WeakKeyDictionary[Engine, _Cache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_of(session: Session) -> _Cache:
    engine = session.get_bind().engine
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = _Cache()
        return cache


def snapshot(session: Session) -> Snapshot:
    """The registry as this transaction sees it: the process's copy when the version read in this
    transaction matches it (no further SQL), else read afresh and shared from then on. In a
    transaction that writes the registry, its own reading, for it alone."""
    memo = transaction_memo(session)
    found: Snapshot | None = memo.get(_SNAPSHOT)
    if found is not None:
        return found
    if memo.get(_CHANGED):
        found = load(session, -1)
    else:
        version = _version(session)
        cache = _cache_of(session)
        with cache.lock:
            if cache.current is None or cache.current.version != version:
                cache.current = load(session, version)
            found = cache.current
    memo[_SNAPSHOT] = found
    return found
