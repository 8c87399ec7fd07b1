"""Loading the community registry: idempotent, validated with file/line/field, never orphaning."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from handlers.errors import RegistryError
from handlers.registry import load_registry, read_registry
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.conftest import EXAMPLE


def _load(engine: Engine, path: Path, clock: FixedClock):
    with UnitOfWork(engine) as uow:
        summary = load_registry(uow.session, path, clock.now())
        uow.commit()
    return summary


def _counts(engine: Engine) -> dict[str, int]:
    with UnitOfWork(engine) as uow:
        return {m.__name__: uow.session.scalar(select(func.count()).select_from(m)) or 0
                for m in (t.Community, t.Committee, t.Grid, t.Building, t.Person, t.Post, t.Category,
                          t.DutyDay, t.Leave, t.Resident)}


def test_example_community_has_the_promised_shape() -> None:
    registry, _ = read_registry(EXAMPLE)
    com = registry.communities[0]
    assert (com.code, com.name, com.district) == ("ZN", "中南社区", "南明区")
    assert len(com.committees) == 3
    assert sum(len(k.grids) for k in com.committees) == 8
    assert sum(len(g.buildings) for k in com.committees for g in k.grids) == 40
    kinds = {p.kind for p in com.posts}
    assert {"grid", "specialist", "mediation", "front_desk", "secretary", "director", "service"} <= kinds


def test_second_load_of_the_same_file_changes_nothing(engine: Engine, clock: FixedClock) -> None:
    first = _load(engine, EXAMPLE, clock)
    assert first.created > 0
    before = _counts(engine)
    again = _load(engine, EXAMPLE, clock)
    assert again.unchanged
    assert _counts(engine) == before


def test_changed_file_updates_in_place(engine: Engine, clock: FixedClock, tmp_path: Path) -> None:
    _load(engine, EXAMPLE, clock)
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE.read_text(encoding="utf-8").replace("中南小区1栋", "中南小区一栋"), encoding="utf-8")
    summary = _load(engine, changed, clock)
    assert summary.updated >= 1 and summary.created == 0
    with UnitOfWork(engine) as uow:
        assert uow.session.scalar(select(t.Building.name).where(t.Building.code == "ZN-B01")) == "中南小区一栋"
    assert _counts(engine)["Building"] == 40


def test_removed_post_sends_its_open_cases_to_the_front_desk(engine: Engine, clock: FixedClock,
                                                             tmp_path: Path) -> None:
    from handlers import cases

    _load(engine, EXAMPLE, clock)
    with UnitOfWork(engine) as uow:
        s = uow.session
        resident = s.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        assert resident is not None
        opened = cases.open_case(s, resident=resident, kind="service_request", category="culture",
                                 urgent=False, text="想报名老年大学书法班", lang="zh-Hans", channel="web",
                                 now=clock.now())
        uow.commit()
        number = opened.case.number
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    # Drop the culture post; its category now belongs to the front desk.
    edited = "".join(line for line in lines if not ("code: culture," in line and "kind: specialist" in line))
    edited = edited.replace("post: culture,", "post: front_desk,")
    path = tmp_path / "no-culture-post.yaml"
    path.write_text(edited, encoding="utf-8")
    summary = _load(engine, path, clock)
    assert number in summary.rerouted_cases
    with UnitOfWork(engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        post = uow.session.get(t.Post, case.post_id)
        assert post is not None and post.kind == "front_desk" and case.state == "returned"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_duplicate_building_code_names_file_line_and_field(tmp_path: Path) -> None:
    path = _broken(tmp_path, "code: ZN-B02", "code: ZN-B01")
    with pytest.raises(RegistryError) as err:
        read_registry(path)
    problem = err.value.problems[0]
    assert str(path) in problem
    assert "duplicate building code 'ZN-B01'" in problem
    assert f":{_line_of(path, 'code: ZN-B01') + 0}:" in problem or ".buildings[1].code" in problem
    assert ".buildings[1].code" in problem


def test_post_with_no_holder_is_refused_and_loads_nothing(engine: Engine, clock: FixedClock,
                                                           tmp_path: Path) -> None:
    path = _broken(tmp_path, "a: zhang_li", "a: nobody_here")
    with pytest.raises(RegistryError) as err:
        _load(engine, path, clock)
    assert "has no holder" in err.value.problems[0]
    assert f"{path}:{_line_of(path, 'a: nobody_here')}:" in err.value.problems[0]
    assert _counts(engine)["Community"] == 0


def test_schema_errors_point_at_the_line(tmp_path: Path) -> None:
    path = _broken(tmp_path, "households: 268", "households: many")
    with pytest.raises(RegistryError) as err:
        read_registry(path)
    assert f"{path}:{_line_of(path, 'households: many')}:" in err.value.problems[0]
    assert "households" in err.value.problems[0]


def test_not_yaml_at_all(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("version: [1\n", encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        read_registry(path)
    assert "not valid YAML" in err.value.problems[0]
