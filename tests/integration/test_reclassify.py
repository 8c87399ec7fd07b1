"""Staff correct a misread message in chat; the correction re-routes the case, shows in the
director's figures, and becomes masked training data that trains and gates a model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bot.app import Services
from bot.cli import main
from handlers.cases import corrections, lifecycle
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
# Misread by the keyword classifier as facilities ("电梯"): it is about a residence permit.
MISREAD = "想给租客办居住证登记，王秀英，3栋2单元301，电话13808510001，门口电梯旁贴的通知看不懂"


def _case(services: Services, number: str) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()


def _post(services: Services, post_id: int | None) -> t.Post:
    with UnitOfWork(services.engine) as uow:
        post = uow.session.get(t.Post, post_id)
        assert post is not None
        return post


async def _misread_case(chat: Chat, services: Services) -> tuple[t.Case, str]:
    said = await chat.resident(0).says(MISREAD)
    case = _case(services, NUMBER.search(said.text).group(0))  # type: ignore[union-attr]
    assert case.category == "facilities" and _post(services, case.post_id).kind == "grid"
    with UnitOfWork(services.engine) as uow:
        worker = uow.session.get(t.Person, case.holder_id)
        assert worker is not None
        return case, worker.code


async def test_grid_worker_reclassifies_by_button_and_the_case_moves(chat: Chat, services: Services) -> None:
    case, worker_code = await _misread_case(chat, services)
    resident, worker = chat.resident(0), chat.staff(worker_code)
    card = (await worker.inbox())[0]
    await worker.presses(card.action("签收"))
    await resident.inbox()

    offered = await worker.presses(card.action("改分类"))
    picked = await worker.presses(offered.action("户籍居住"))
    assert "户籍居住" in picked.text and "户籍居住专干" in picked.text

    moved = _case(services, case.number)
    post = _post(services, moved.post_id)
    assert (moved.kind, moved.category, post.code) == ("service_request", "residence", "residence")
    assert moved.holder_id == post.a_holder_id
    # Deadlines unchanged, first responder kept.
    assert (moved.ack_due, moved.reply_due, moved.resolve_due) == (case.ack_due, case.reply_due, case.resolve_due)
    assert moved.first_responder_id == case.holder_id
    # The resident is told as on a transfer; the new holder gets the card.
    told = await resident.inbox()
    assert any("已转交 户籍居住专干" in n.text for n in told), [n.text for n in told]
    with UnitOfWork(services.engine) as uow:
        events = [(e.action, e.data) for e in lifecycle.history(uow.session, moved)]
    reclassified = [d for a, d in events if a == "reclassified"]
    assert reclassified == [{"from_kind": "service_request", "from_category": "facilities",
                             "to_kind": "service_request", "to_category": "residence"}]
    assert [a for a, _ in events][-2:] == ["reclassified", "transferred"]


async def test_reclassify_command_within_the_same_post_does_not_move(chat: Chat, services: Services) -> None:
    case, worker_code = await _misread_case(chat, services)
    worker = chat.staff(worker_code)
    said = await worker.says(f"/reclassify {case.number} property")
    assert "物业服务" in said.text
    after = _case(services, case.number)
    assert after.category == "property" and after.post_id == case.post_id and after.holder_id == case.holder_id
    with UnitOfWork(services.engine) as uow:
        assert [e.action for e in lifecycle.history(uow.session, after)][-1] == "reclassified"
    # A category the registry does not know is refused and changes nothing.
    await worker.says(f"/reclassify {case.number} service_request plumbing")
    assert _case(services, case.number).category == "property"


async def test_complaint_reading_goes_to_mediation_and_director_sees_the_confusion(
        chat: Chat, services: Services) -> None:
    case, worker_code = await _misread_case(chat, services)
    await chat.staff(worker_code).says(f"/reclassify {case.number} complaint neighbor")
    moved = _case(services, case.number)
    assert _post(services, moved.post_id).kind == "mediation"
    figures = await chat.staff("lin_hui").says("/figures 社区")
    assert "分类被纠正：1 件" in figures.text and "facilities→neighbor ×1" in figures.text


async def test_transfer_to_another_category_and_return_count_as_corrections(
        chat: Chat, services: Services) -> None:
    case, worker_code = await _misread_case(chat, services)
    worker = chat.staff(worker_code)
    await worker.says(f"/transfer {case.number} civil_affairs 应由民政办理")
    second, _ = await _misread_case(chat, services)
    await worker.says(f"/return {second.number} 不是设施问题")
    with UnitOfWork(services.engine) as uow:
        found = corrections.read(uow.session, case.community_id)
    assert [(c.number, c.confusion) for c in found] == [(case.number, "facilities→civil_affairs"),
                                                        (second.number, "facilities→?")]
    # The front desk sends the returned case back to a grid post, which owns facilities: the
    # return was about something else, and the reading stands.
    assert _post(services, _case(services, second.number).post_id).kind == "front_desk"
    await chat.staff("xu_ting").says(f"/transfer {second.number} G01 网格处理")
    with UnitOfWork(services.engine) as uow:
        found = corrections.read(uow.session, case.community_id)
    assert [c.number for c in found] == [case.number]


async def test_corrections_export_masked_then_train_and_gate(
        chat: Chat, services: Services, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    case, worker_code = await _misread_case(chat, services)
    await chat.staff(worker_code).says(f"/reclassify {case.number} residence")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", "test-secret")
    out = tmp_path / "corrections.yml"
    assert main(["nlu", "corrections", "--since", "2000-01-01", "--out", str(out)]) == 0
    written = out.read_text(encoding="utf-8")
    assert "13808510001" not in written and "王秀英" not in written and "301" not in written
    data = yaml.safe_load(written)
    assert data["nlu"] == [{"intent": "residence", "examples":
                            "- 想给租客办居住证登记，<name>，<room>，电话<phone>，门口电梯旁贴的通知看不懂\n"}]
    # Nothing corrected after a later date.
    later = tmp_path / "later.yml"
    assert main(["nlu", "corrections", "--since", "2099-01-01", "--out", str(later)]) == 0
    assert yaml.safe_load(later.read_text(encoding="utf-8"))["nlu"] is None

    model = tmp_path / "candidate"
    assert main(["nlu", "train", "--extra", str(out), "--out", str(model)]) == 0
    manifest = (model / "manifest.json").read_text(encoding="utf-8")
    assert "corrections.yml" in manifest
    capsys.readouterr()
    assert main(["nlu", "eval", "--gate", str(model)]) == 0
    assert "passes the gate" in capsys.readouterr().out
    assert main(["nlu", "eval", "--gate", str(tmp_path / "no-such-model")]) == 2
