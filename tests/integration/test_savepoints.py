"""A savepoint rolled back takes back the history events appended in it, not only its rows: the
events wait in the transaction's memo until the commit (storage.sequences), and an escalation
undone in the outbox sender's fall-back must not stay in the case's history."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.app import Services
from handlers.cases import lifecycle
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.integration.test_statement_budget import file, residents_of


def _history(services: Services, case_id: int | None) -> list[tuple[int, str]]:
    with UnitOfWork(services.engine) as uow:
        return [(e.seq, e.action) for e in uow.session.scalars(
            select(t.CaseEvent).where(t.CaseEvent.case_id == case_id).order_by(t.CaseEvent.seq))]  # type: ignore[arg-type]


def test_events_of_a_rolled_back_savepoint_are_not_written(services: Services) -> None:
    number = file(services, residents_of(services, "ZN-B01", 1)[0])
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()  # type: ignore[arg-type]
        before = _history(services, case.id)
        lifecycle.record(uow.session, case, "noted_before", now)
        uow.session.flush()  # written, outside the savepoint, as the sender does before one
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            lifecycle.record(uow.session, case, "escalated_then_undone", now)
            raise RuntimeError("a failure later in the savepoint")
        with uow.session.begin_nested():
            lifecycle.record(uow.session, case, "kept", now)
        uow.commit()
    after = _history(services, case.id)
    assert [a for _, a in after[len(before):]] == ["noted_before", "kept"]
    assert [s for s, _ in after] == list(range(1, len(after) + 1))  # no number left unused
