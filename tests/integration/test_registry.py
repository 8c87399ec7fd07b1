"""Loading the community registry: idempotent, validated with file/line/field, never orphaning."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.app import Services
from handlers.errors import RegistryError
from handlers.registry.loader import load_registry, read_registry
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests import district
from tests.chat import Chat
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
    from handlers.cases import lifecycle

    _load(engine, EXAMPLE, clock)
    with UnitOfWork(engine) as uow:
        s = uow.session
        resident = s.scalars(select(t.Resident).order_by(t.Resident.id)).first()
        assert resident is not None
        opened = lifecycle.open_case(s, resident=resident, kind="service_request", category="culture",
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


# --------------------------------------------------------------------------- a district of communities


def _snapshot(engine: Engine) -> dict[str, list[dict]]:
    """Every registry row as it is stored, to show a refused load changed nothing."""
    with UnitOfWork(engine) as uow:
        return {m.__name__: [row.model_dump() for row in uow.session.scalars(select(m).order_by(m.id))]
                for m in (t.Community, t.Committee, t.Grid, t.Building, t.Person, t.Post, t.Category,
                          t.DutyDay, t.Leave, t.Resident, t.Identity)}


def _lines_with(path: Path, needle: str) -> list[int]:
    return [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            if line.strip().removeprefix("- ") == needle]


def _first_demo_resident(services: Services, community: str) -> int:
    """The chat driver's index of the community's first demo resident."""
    with UnitOfWork(services.engine) as uow:
        demo = uow.session.scalars(
            select(t.Resident).where(t.Resident.demo.is_(True)).order_by(t.Resident.id)).all()
        com = uow.session.scalars(select(t.Community).where(t.Community.code == community)).one()
        return next(i for i, r in enumerate(demo) if r.community_id == com.id)


async def test_communities_of_a_district_keep_their_own_posts(chat: Chat, services: Services,
                                                              tmp_path: Path) -> None:
    # The example community is loaded; the district's file adds a second one with the same post codes.
    path = district.write(tmp_path / "district.yaml", district.district())
    summary = _load(services.engine, path, services.clock)  # type: ignore[arg-type]
    assert summary.created > 0
    with UnitOfWork(services.engine) as uow:
        codes = {com.code: {p.code for p in uow.session.scalars(
            select(t.Post).where(t.Post.community_id == com.id, t.Post.active.is_(True)))}
            for com in uow.session.scalars(select(t.Community))}
    assert codes["ZN"] == codes["XH"] and {"front_desk", "mediation", "director", "secretary",
                                           "service"} <= codes["ZN"]

    complaint = "楼上邻居天天半夜噪音扰民，我要投诉"
    for community, mediator in (("ZN", "luo_ming"), ("XH", district.person_id("luo_ming"))):
        said = await chat.resident(_first_demo_resident(services, community)).says(complaint)
        number = re.search(rf"{community}-\d{{8}}-\d{{4}}", said.text)
        assert number, said.text
        with UnitOfWork(services.engine) as uow:
            case = uow.session.scalars(select(t.Case).where(t.Case.number == number.group(0))).one()
            post = uow.session.get(t.Post, case.post_id)
            holder = uow.session.get(t.Person, case.holder_id)
            com = uow.session.get(t.Community, case.community_id)
            assert post is not None and holder is not None and com is not None
            assert (post.code, com.code, holder.code) == ("mediation", community, mediator)
            assert post.community_id == case.community_id

    proposals = {}
    for community, text in (("ZN", "建议在小区门口增设快递柜"), ("XH", "建议在公园增设长椅")):
        said = await chat.resident(_first_demo_resident(services, community)).says(text)
        found = re.search(rf"{community}-P-2026-\d{{4}}", said.text)
        assert found, said.text
        proposals[community] = found.group(0)
    for community, secretary, other in (("ZN", "guo_xin", "XH"), ("XH", district.person_id("guo_xin"), "ZN")):
        said = await chat.staff(secretary).says("/agenda")
        assert proposals[community] in said.text and proposals[other] not in said.text, said.text
        told = " ".join(n.text for n in await chat.staff(secretary).inbox())
        assert proposals[community] in told and proposals[other] not in told


def test_a_person_in_two_communities_of_one_file_is_refused_naming_both_lines(
        engine: Engine, clock: FixedClock, tmp_path: Path) -> None:
    _load(engine, EXAMPLE, clock)
    before = _snapshot(engine)
    data = district.district(second_people=[{"id": "zhang_li", "name": "张丽", "roles": ["grid_worker"]}])
    path = district.write(tmp_path / "district.yaml", data)
    first, second = _lines_with(path, "id: zhang_li")
    with pytest.raises(RegistryError) as err:
        _load(engine, path, clock)
    problem = next(p for p in err.value.problems if "zhang_li" in p)
    assert problem.startswith(f"{path}:{second}: communities[1].people[")
    assert f"{path}:{first}: communities[0].people[" in problem
    assert "two communities (ZN and XH)" in problem
    assert _snapshot(engine) == before


def test_a_person_of_a_community_loaded_from_another_file_is_refused(
        engine: Engine, clock: FixedClock, tmp_path: Path) -> None:
    _load(engine, EXAMPLE, clock)
    before = _snapshot(engine)
    data = district.district(with_first=False,
                             second_people=[{"id": "zhang_li", "name": "张丽", "roles": ["grid_worker"]}])
    path = district.write(tmp_path / "xihu.yaml", data)
    [line] = _lines_with(path, "id: zhang_li")
    with pytest.raises(RegistryError) as err:
        _load(engine, path, clock)
    assert err.value.problems == [
        (f"{path}:{line}: communities[0].people[{len(data['communities'][0]['people']) - 1}].id: "
        "person id 'zhang_li' already belongs to community ZN (中南社区); it belongs to one community")]
    assert _snapshot(engine) == before
    # Without that person the same file loads beside the example community.
    data["communities"][0]["people"].pop()
    _load(engine, district.write(path, data), clock)
    with UnitOfWork(engine) as uow:
        zhang = uow.session.scalars(select(t.Person).where(t.Person.code == "zhang_li")).one()
        home = uow.session.get(t.Community, zhang.community_id)
        assert home is not None and home.code == "ZN"


def test_a_chat_account_named_for_two_people_is_refused(tmp_path: Path) -> None:
    data = district.district(second_people=[
        {"id": "xh_new", "name": "新人", "roles": ["grid_worker"], "telegram_id": 900001}])
    data["communities"][0]["people"][0]["telegram_id"] = 900001
    path = district.write(tmp_path / "district.yaml", data)
    first, second = _lines_with(path, "telegram_id: 900001")
    with pytest.raises(RegistryError) as err:
        read_registry(path)
    assert err.value.problems == [
        (f"{path}:{second}: communities[1].people[{len(data['communities'][1]['people']) - 1}].telegram_id: "
        f"telegram_id '900001' is used by two communities (ZN and XH); it belongs to one community "
        f"(first at {path}:{first}: communities[0].people[0].telegram_id)")]
