"""A pooled PostgreSQL connection the server has closed (a restart, an idle timeout) is found
out before a transaction uses it, once it has rested in the pool; a connection used a moment
ago is not pinged, so a busy pool sends no extra round trip per transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from storage import db
from tests.conftest import postgres_url, reset_postgres


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    url = postgres_url()
    reset_postgres(url)
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _close_from_the_server(engine: Engine) -> None:
    """The server ends every idle connection of the pool, as a restart would."""
    with engine.connect() as probe:
        mine = probe.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = db.make_engine(postgres_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": mine}).scalar_one()
    finally:
        admin.dispose()


def test_a_rested_connection_the_server_closed_is_replaced_before_use(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "REST_BEFORE_PING", 0.0)
    _close_from_the_server(pg_engine)
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42


def test_without_the_ping_that_transaction_would_have_failed(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: a connection taken as alive (used a moment ago) fails its next transaction
    once, and the pool then recovers by itself."""
    monkeypatch.setattr(db, "REST_BEFORE_PING", 3600.0)
    _close_from_the_server(pg_engine)
    with pytest.raises(OperationalError), pg_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with pg_engine.connect() as conn:
        assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42


def test_a_connection_used_a_moment_ago_is_not_pinged(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[object] = []
    real = pg_engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return real(dbapi_connection)  # type: ignore[arg-type]

    monkeypatch.setattr(pg_engine.dialect, "do_ping", counted)
    for _ in range(3):
        with pg_engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert pings == []  # new, then back a moment ago each time
    monkeypatch.setattr(db, "REST_BEFORE_PING", 0.0)
    with pg_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert len(pings) == 1  # rested: pinged
