"""On PostgreSQL the console's case list reads its first page from the deadline index (migration
0010, storage.tables.NEXT_DUE) rather than sorting every case of the community: the index's
expression must be the very one the list orders by (next_due_column() of handlers/cases/lifecycle.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import event, select, text

from bot.app import Services
from handlers.cases import listing
from storage import tables as t
from storage.unit_of_work import UnitOfWork

NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)


def test_the_first_page_is_read_from_the_deadline_index(services: Services) -> None:
    if services.engine.dialect.name != "postgresql":
        pytest.skip("the deadline index is PostgreSQL's (SQLite matches no parametrised expression to one)")
    plans: list[str] = []

    @event.listens_for(services.engine, "before_cursor_execute")
    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        # The statement exactly as the list sends it, its parameters bound as they are.
        if statement.lstrip().startswith("SELECT") and "ORDER BY" in statement and "LIMIT" in statement:
            raw = conn.connection.cursor()
            # Sorting made prohibitively dear: a plan without a Sort node can only come from
            # an index whose expression is the ORDER BY's.
            raw.execute("SET LOCAL enable_sort = off")
            raw.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in raw.fetchall()))
            raw.execute("RESET enable_sort")

    with UnitOfWork(services.engine) as uow:
        director = uow.session.scalars(select(t.Person).where(t.Person.code == "lin_hui")).one()
        for filters in (listing.Filters(), listing.Filters(state="open", overdue=True)):
            listing.search(uow.session, director, filters, NOW)
        assert uow.session.execute(text(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_case_next_due'")).scalar() == 1
    event.remove(services.engine, "before_cursor_execute", explain)
    assert len(plans) == 2, plans
    for plan in plans:
        assert "ix_case_next_due" in plan and "Sort" not in plan, plan
