"""What a filed case costs the database, counted through the real pipeline, and the registry
cache that keeps it low staying right when another process loads a registry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from bot.app import Services, build_services
from bot.channels.base import Incoming
from bot.settings import Settings
from handlers.notify import ensure_identity
from handlers.registry.loader import load_registry
from storage import tables as t
from storage.clock import FixedClock
from storage.state import MemoryStateStore
from storage.unit_of_work import UnitOfWork
from tests.conftest import EXAMPLE
from tests.fakes.classifier import KeywordClassifier

CASE_NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
BUDGET = 8  # SQL statements for a filed case


def residents_of(services: Services, building: str, count: int = 2) -> list[t.Resident]:
    """`count` new residents of `building`, each with a web chat identity."""
    with UnitOfWork(services.engine) as uow:
        at = uow.session.scalars(select(t.Building).where(t.Building.code == building)).one()  # type: ignore[arg-type]
        grid = uow.session.get(t.Grid, at.grid_id)
        committee = uow.session.get(t.Committee, grid.committee_id if grid else None)
        assert committee is not None
        found = [t.Resident(community_id=committee.community_id, building_id=at.id,
                            created_at=services.clock.now()) for _ in range(count)]
        uow.session.add_all(found)
        uow.session.flush()
        for resident in found:
            ensure_identity(uow.session, "web", f"resident:{resident.id}", services.clock.now(), resident=resident)
        uow.commit()
    return found


def file(services: Services, resident: t.Resident, text: str = "楼道的灯坏了，晚上太黑") -> str:
    replies = services.pipeline.handle_sync(Incoming(channel="web", address=f"resident:{resident.id}", text=text))
    found = CASE_NUMBER.search(replies[0].text)
    assert found, replies[0].text
    return found.group(0)


def holder_of(services: Services, number: str) -> str:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        holder = uow.session.get(t.Person, case.holder_id)
        assert holder is not None
        return holder.code


def test_a_filed_case_costs_at_most_eight_sql_statements(services: Services) -> None:
    first, second = residents_of(services, "ZN-B01")[:2]
    file(services, first)  # the process reads the registry once, the grid worker gets an inbox
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        number = file(services, second)
    finally:
        event.remove(services.engine, "before_cursor_execute", count)
    assert holder_of(services, number) == "zhang_li"
    assert len(statements) <= BUDGET, "\n".join(statements)


@pytest.fixture
def two_processes(database_url: str, clock: FixedClock) -> Iterator[tuple[Services, Services]]:
    settings = Settings(database_url=database_url, secret_key="test-secret", demo=True)
    built = [build_services(settings, clock=clock, classifier=KeywordClassifier(), state=MemoryStateStore())
             for _ in range(2)]
    yield built[0], built[1]
    for services in built:
        services.engine.dispose()


def test_a_registry_load_in_one_process_reroutes_the_next_message_in_another(
        two_processes: tuple[Services, Services], tmp_path: Path) -> None:
    serving, loading = two_processes
    resident = residents_of(serving, "ZN-B01")[0]
    assert holder_of(serving, file(serving, resident)) == "zhang_li"
    # The other process swaps the first grid's A and B holders and commits.
    swapped = tmp_path / "swapped.yaml"
    text = EXAMPLE.read_text(encoding="utf-8")
    line = "grid: ZN-G01, a: zhang_li,  b: wang_fang}"
    assert line in text
    swapped.write_text(text.replace(line, "grid: ZN-G01, a: wang_fang,  b: zhang_li}"), encoding="utf-8")
    with UnitOfWork(loading.engine) as uow:
        load_registry(uow.session, swapped, loading.clock.now())
        uow.commit()
    assert holder_of(serving, file(serving, resident)) == "wang_fang"
