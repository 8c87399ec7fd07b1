"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlmodel import SQLModel

import storage.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from bot.cli import main
from storage import db
from storage.tables import Outbox


# An index on an expression is left out of the comparison (db.UNCOMPARED_INDEXES); SQLite's
# autogenerate says so on the way.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_the_migrated_schema_is_the_declared_one(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": db.compared})
            differences = compare_metadata(context, SQLModel.metadata)
            assert {"chatline", "media"} <= set(inspect(conn).get_table_names())
            assert "media" in {c["name"] for c in inspect(conn).get_columns("outbox")}
    finally:
        engine.dispose()
    assert differences == []


def test_db_upgrade_builds_an_empty_database_and_downgrade_removes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    engine = db.make_engine(url)
    try:
        assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())
        command.downgrade(db.alembic_config(url), "base")
        assert inspect(engine).get_table_names() == ["alembic_version"]
        assert main(["db", "upgrade"]) == 0
        assert "chatline" in inspect(engine).get_table_names()
        # A database deployed at the first schema gains the chat lines.
        command.downgrade(db.alembic_config(url), "0001")
        assert "chatline" not in inspect(engine).get_table_names()
        assert main(["db", "upgrade"]) == 0
        assert "chatline" in inspect(engine).get_table_names()
        # One deployed before kept media gains the media table, and loses it going back.
        command.downgrade(db.alembic_config(url), "0002")
        assert "media" not in inspect(engine).get_table_names()
        assert main(["db", "upgrade"]) == 0
        assert "media" in inspect(engine).get_table_names()
        # One deployed before notices carried photos: its pending notices gain an empty list.
        command.downgrade(db.alembic_config(url), "0003")
        assert "media" not in {c["name"] for c in inspect(engine).get_columns("outbox")}
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO outbox (channel, address, topic, text, buttons, state, attempts, next_attempt_at,"
                " created_at, last_error) VALUES ('telegram', '1001', '', '通知', '[]', 'pending', 0,"
                " '2026-12-02 00:00:00', '2026-12-02 00:00:00', '')"))
        assert main(["db", "upgrade"]) == 0
        with engine.connect() as conn:
            assert conn.execute(select(Outbox.media)).scalars().all() == [[]]
    finally:
        engine.dispose()
