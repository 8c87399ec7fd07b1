"""Engine and schema from a database URL (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def upsert_insert(session: Session, table: Any) -> Any:
    """`INSERT INTO table` in the session's dialect, with its ON CONFLICT clauses (both
    PostgreSQL and SQLite have them, each in its own class)."""
    return (pg_insert if is_postgresql(session) else sqlite_insert)(table)


_SIDE_ENGINES: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_SIDE_GUARD = threading.Lock()


def autocommit_engine(engine: Engine) -> Engine:
    """An AUTOCOMMIT engine on `engine`'s database with a small pool of its own, for a statement
    that must commit at once while the caller's transaction goes on (storage.sequences).

    Its own pool, not `engine`'s: a caller holding one of `engine`'s connections would otherwise
    wait for a second one, and with every connection held by such callers none would ever come.
    It is disposed with `engine`.
    """
    with _SIDE_GUARD:
        side = _SIDE_ENGINES.get(engine)
        if side is None:
            # Not pinged at checkout: a ping is a round trip per statement, and the one caller
            # retries a statement on a connection found closed instead (storage.sequences).
            side = make_engine(engine.url.render_as_string(hide_password=False),
                               isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8, pool_pre_ping=False)
            _SIDE_ENGINES[engine] = side
            event.listen(engine, "engine_disposed", lambda _engine: side.dispose())
        return side


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the URL; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    pre_ping = kwargs.pop("pool_pre_ping", True)
    if kwargs.get("poolclass") is not NullPool:
        kwargs.setdefault("pool_size", 10)
    engine = create_engine(url, **kwargs)
    if pre_ping:
        _ping_when_rested(engine)
    return engine


# A connection back in the pool for less than this is taken as alive without a ping.
REST_BEFORE_PING = 1.0


def _ping_when_rested(engine: Engine) -> None:
    """SQLAlchemy's pre-ping (the dialect's own), for a connection that has rested in the pool
    longer than REST_BEFORE_PING: one the server has closed since (a restart, an idle timeout)
    is replaced before anyone uses it. A connection used a moment ago is alive, and a ping per
    checkout would be a round trip more per transaction. After a server restart, a connection
    returned less than that before it fails its next transaction once, which invalidates the
    rest of the pool (SQLAlchemy's handling of a disconnect)."""

    @event.listens_for(engine, "checkin")
    def _rested_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("checked_in_at", None)
        if since is None or time.monotonic() - since < REST_BEFORE_PING:
            return  # new, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool drops this connection and checks out another (a new one if need be).
            raise DisconnectionError(f"the connection was closed: {type(exc).__name__}") from exc


# Indexes on an expression (storage.tables.NEXT_DUE) that autogenerate cannot compare: SQLite's
# reflection skips them, PostgreSQL's renders the expression in its own words. Migration 0010
# creates this one; tests/integration/test_case_list_index.py checks the case list uses it.
UNCOMPARED_INDEXES = frozenset({"ix_case_next_due"})


def compared(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's `include_object`: what autogenerate compares (all but UNCOMPARED_INDEXES)."""
    return not (type_ == "index" and name in UNCOMPARED_INDEXES)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _alembic_quiet() -> Iterator[None]:
    """Alembic's INFO lines (its context, every step) only when DEBUG is on."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    if not alembic_log.isEnabledFor(logging.DEBUG):
        alembic_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_log.setLevel(level)


def revision(url: str) -> str | None:
    """The schema revision the database is at (None: no schema yet)."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn, _alembic_quiet():
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (`alembic upgrade head`).

    Quietly: a database already at the newest schema is left alone, and one that is migrated is
    reported in one line, from which revision to which. Alembic's own lines are logged only at
    DEBUG (`griddesk --verbose`, LOG_LEVEL=DEBUG).
    """
    cfg = alembic_config(url)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    before = revision(url)
    if before == head:
        return
    with _alembic_quiet():
        command.upgrade(cfg, "head")
    log.info("database migrated from %s to %s", before or "an empty database", head)


def migrated_engine(url: str) -> Engine:
    """An engine for a database brought to the newest schema first (what commands start with)."""
    upgrade(url)
    return make_engine(url)


def recreate_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the PostgreSQL server of `server_url`; its URL.

    For benchmarks, which need an empty database of their own next to the one in the URL, and
    for parallel test workers, one database each.
    """
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def ping(engine: Engine) -> None:
    """Raise when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
