"""The residents' council (三会一评) end to end through the chat, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import docx
from sqlalchemy import select, update

from bot.app import Services
from handlers.council import export
from handlers.registry.loader import load_registry
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.chat import PROPOSAL, Chat

CASE = re.compile(r"ZN-\d{8}-\d{4}")
SECRETARY = "guo_xin"
# The evening of the decision meeting set for 2026-12-09 19:00 (Asia/Shanghai) in these tests.
DECISION_EVENING = dt.datetime(2026, 12, 9, 13, 0, tzinfo=dt.UTC)


def _proposal(services: Services, number: str) -> t.Proposal:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Proposal).where(t.Proposal.number == number)).one()


def _co_signs(services: Services, number: str) -> int:
    with UnitOfWork(services.engine) as uow:
        proposal = uow.session.scalars(select(t.Proposal).where(t.Proposal.number == number)).one()
        return len(
            uow.session.scalars(select(t.CoSign).where(t.CoSign.proposal_id == proposal.id)).all()
        )


def _events(services: Services, number: str) -> list[str]:
    with UnitOfWork(services.engine) as uow:
        proposal = uow.session.scalars(select(t.Proposal).where(t.Proposal.number == number)).one()
        return [
            e.action
            for e in uow.session.scalars(
                select(t.ProposalEvent)
                .where(t.ProposalEvent.proposal_id == proposal.id)
                .order_by(t.ProposalEvent.seq)
            )
        ]


def _set_threshold(services: Services, value: int) -> None:
    with UnitOfWork(services.engine) as uow:
        uow.session.execute(update(t.Community).values(co_sign_threshold=value))
        uow.commit()


async def test_whole_lifecycle_from_proposal_to_evaluation(chat: Chat, services: Services) -> None:
    _set_threshold(services, 3)
    secretary = chat.staff(SECRETARY)
    said = await secretary.says("/meeting collection 2026-11-28 19:00 中南社区活动室")
    assert "意见收集会" in said.text and "11月28日" in said.text

    proposer = chat.resident(0)
    said = await proposer.says("建议在中南小区3栋旁边增设一组健身器材，方便老人锻炼")
    number = PROPOSAL.search(said.text).group(0)  # type: ignore[union-attr]
    assert number == "ZN-P-2026-0001"
    assert "意见收集会" in said.text and "11月28日" in said.text and "19:00" in said.text
    assert _proposal(services, number).stage == "on_agenda"
    assert any(number in n.text for n in await secretary.inbox())

    # A second resident with the same idea is offered the existing proposal first.
    neighbour = chat.resident(1)
    said = await neighbour.says("我建议小区里增设健身器材，老人没地方锻炼")
    assert number in said.text and not PROPOSAL.search(said.text.replace(number, ""))
    said = await neighbour.presses(said.action(f"附议 {number}"))
    assert "共 1 人附议" in said.text
    assert len(_all_proposals(services)) == 1

    await chat.resident(2).says(f"/cosign {number}")
    said = await chat.resident(3).says(f"附议 {number}")
    assert "共 3 人附议" in said.text
    # The threshold put it on the next discussion meeting (none scheduled yet) and told the secretary once.
    assert _proposal(services, number).stage == "discussion"
    told = [n for n in await secretary.inbox() if "附议已达 3 人" in n.text]
    assert len(told) == 1
    await chat.resident(4).says(f"/cosign {number}")
    assert not [n for n in await secretary.inbox() if "附议已达" in n.text]
    assert any("讨论" in n.text and number in n.text for n in await proposer.inbox())

    said = await secretary.says("/meeting discussion 2026-12-02 19:00 社区会议室")
    assert "已列入 1 项" in said.text
    discussion = _proposal(services, number).discussion_meeting_id
    assert discussion is not None
    await secretary.says("/meeting decision 2026-12-09 19:00 社区会议室")
    said = await secretary.says(f"/decide {number}")
    assert "议事决策会" in said.text
    assert any("决策" in n.text and "12月9日" in n.text for n in await neighbour.inbox())

    services.clock.set(DECISION_EVENING)  # type: ignore[attr-defined]
    said = await secretary.says(f"/adopt {number} service 2026-12-31 在3栋旁增设健身器材一组")
    case_number = CASE.search(said.text).group(0)  # type: ignore[union-attr]
    proposal = _proposal(services, number)
    assert proposal.stage == "in_execution" and proposal.case_id is not None
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == case_number)).one()
        post = uow.session.get(t.Post, case.post_id)
        holder = uow.session.get(t.Person, case.holder_id)
        assert post is not None and post.kind == "service" and holder is not None
        assert case.proposal_id == proposal.id and case.state == "assigned"
        assert case.ack_due < case.reply_due < case.resolve_due
        holder_code, case_id = holder.code, case.id
    for resident in (proposer, neighbour):
        notices = await resident.inbox()
        assert any(
            "已由议事决策会通过" in n.text and "增设健身器材一组" in n.text and "12月31日" in n.text
            for n in notices
        )
        assert any("社区服务中心" in n.text and "执行" in n.text for n in notices)

    staff = chat.staff(holder_code)
    assert any(case_number in n.text for n in await staff.inbox())
    await staff.says(f"/resolve {case_id} 健身器材已安装完毕")
    assert _proposal(services, number).stage == "done"
    asked = [n for n in await neighbour.inbox() if "请对执行情况进行评议" in n.text]
    assert asked
    said = await neighbour.presses(asked[0].action("满意"))
    assert "还想说点什么" in said.text
    said = await neighbour.says("器材很好用 谢谢社区")
    assert "已记录" in said.text
    proposer_notices = await proposer.inbox()
    asked_proposer = [n for n in proposer_notices if "请对执行情况进行评议" in n.text]
    assert len(asked_proposer) == 1 and "健身器材已安装完毕" in asked_proposer[0].text
    assert not [n for n in proposer_notices if "请为这次办理打分" in n.text]
    await proposer.presses(asked_proposer[0].action("不满意"))
    await proposer.says("器材位置离楼太近")
    with UnitOfWork(services.engine) as uow:
        executed = uow.session.get(t.Case, case_id)
        assert executed is not None
        assert (executed.state, executed.rating, executed.rating_comment) == (
            "closed", "unsatisfied", "器材位置离楼太近")

    assert _proposal(services, number).stage == "evaluated"
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(
            select(t.Evaluation).where(t.Evaluation.proposal_id == proposal.id)
        ).all()
        assert sorted((r.rating, r.comment) for r in rows) == [
            ("satisfied", "器材很好用 谢谢社区"), ("unsatisfied", "器材位置离楼太近")]
    assert _events(services, number) == [
        "collected",
        "on_agenda",
        "co_signed",
        "co_signed",
        "co_signed",
        "discussion",
        "co_signed",
        "placed",
        "decision",
        "adopted",
        "in_execution",
        "done",
        "evaluated",
        "evaluation_commented",
        "evaluated",
        "evaluation_commented",
    ]


def _all_proposals(services: Services) -> list[str]:
    with UnitOfWork(services.engine) as uow:
        return [p.number for p in uow.session.scalars(select(t.Proposal))]


async def test_not_adopted_proposal_tells_supporters_the_reason(
    chat: Chat, services: Services
) -> None:
    number = await chat.resident(0).proposes("建议把小区东门改为24小时开放")
    await chat.resident(1).says(f"/cosign {number}")
    secretary = chat.staff(SECRETARY)
    await secretary.says(f"/discuss {number}")
    await secretary.says(f"/decide {number}")
    said = await secretary.says(f"/notadopt {number} 东门夜间开放存在安全隐患，经表决未通过")
    assert number in said.text
    assert _proposal(services, number).stage == "not_adopted"
    for index in (0, 1):
        assert any(
            "未通过" in n.text and "安全隐患" in n.text for n in await chat.resident(index).inbox()
        )


async def test_proposal_without_a_meeting_waits_and_is_picked_up(
    chat: Chat, services: Services
) -> None:
    said = await chat.resident(0).says("建议在社区开设老年人智能手机培训班")
    number = PROPOSAL.search(said.text).group(0)  # type: ignore[union-attr]
    assert "还没有定时间" in said.text
    assert _proposal(services, number).stage == "collected"
    await chat.staff(SECRETARY).says("/meeting 收集 2026-11-30 19:00 活动室 通知")
    assert _proposal(services, number).stage == "on_agenda"
    notices = await chat.resident(0).inbox()
    assert any("已列入" in n.text and number in n.text for n in notices)
    assert any("欢迎居民参加" in n.text for n in notices)


async def test_only_the_secretary_and_director_run_the_council(
    chat: Chat, services: Services
) -> None:
    number = await chat.resident(0).proposes("建议增设电动车充电桩")
    said = await chat.resident(1).says("/agenda")
    assert "不适用于您" in said.text
    said = await chat.resident(0).says(f"/adopt {number} service 2026-12-31 增设")
    assert "不适用于您" in said.text
    worker = chat.staff("zhang_li")
    for text in (
        "/agenda",
        f"/adopt {number} service 2026-12-31 增设",
        f"/discuss {number}",
        "/meeting collection 2026-11-30 19:00 活动室",
    ):
        said = await worker.says(text)
        assert "只有议事会秘书" in said.text, text
    said = await worker.presses(f"pd:{_proposal(services, number).id}")
    assert "只有议事会秘书" in said.text
    assert _proposal(services, number).stage == "collected"
    # The secretary post's B holder and the director may.
    said = await chat.staff("tang_yan").says("/agenda")
    assert number in said.text and "只有议事会秘书" not in said.text
    said = await chat.staff("he_wei").says(f"/discuss {number}")
    assert "讨论" in said.text
    assert _proposal(services, number).stage == "discussion"


async def test_residents_see_only_their_own_councils_proposals(
    chat: Chat, services: Services, tmp_path: Path
) -> None:
    registry = tmp_path / "second.yaml"
    registry.write_text(SECOND_COMMUNITY, encoding="utf-8")
    with UnitOfWork(services.engine) as uow:
        load_registry(uow.session, registry, services.clock.now())
        uow.commit()
    with UnitOfWork(services.engine) as uow:
        demo = uow.session.scalars(
            select(t.Resident).where(t.Resident.demo.is_(True)).order_by(t.Resident.id)
        ).all()
        index = next(i for i, r in enumerate(demo) if r.name == "钱程")
    said = await chat.resident(index).says("建议在公园增设长椅")
    other = re.search(r"BY-P-2026-\d{4}", said.text)
    assert other, said.text
    mine = await chat.resident(0).proposes("建议在小区增设快递柜")

    said = await chat.resident(1).says("/proposals")
    assert mine in said.text and other.group(0) not in said.text
    said = await chat.resident(1).says(f"/cosign {other.group(0)}")
    assert "没有找到" in said.text
    said = await chat.resident(index).says(f"/proposal {mine}")
    assert "没有找到" in said.text
    said = await chat.staff(SECRETARY).says(f"/discuss {other.group(0)}")
    assert "没有找到" in said.text


async def test_merge_carries_signatures_over_and_counts_each_resident_once(
    chat: Chat, services: Services
) -> None:
    kept = await chat.resident(0).proposes("建议在小区门口设置快递柜")
    duplicate = await chat.resident(1).proposes("建议在小区门口设置智能快递柜，取件方便")
    await chat.resident(2).says(f"/cosign {kept}")
    await chat.resident(2).says(f"/cosign {duplicate}")
    await chat.resident(3).says(f"/cosign {duplicate}")
    secretary = chat.staff(SECRETARY)
    await secretary.says("/meeting collection 2026-11-30 19:00 活动室")
    agenda = await secretary.says("/agenda")
    assert kept in agenda.text and duplicate in agenda.text and "重复" in agenda.text
    said = await secretary.presses(agenda.action(f"把 {duplicate} 并入 {kept}"))
    assert "现共 3 人" in said.text
    assert (
        _co_signs(services, kept) == 3
    )  # residents 1, 2, 3: resident 2 signed both and counts once
    assert _proposal(services, duplicate).stage == "merged"
    assert any("合并" in n.text and kept in n.text for n in await chat.resident(1).inbox())
    said = await chat.resident(4).says(f"/cosign {duplicate}")
    assert "阶段不能" in said.text


async def test_reject_as_case_opens_a_case_for_the_proposer(chat: Chat, services: Services) -> None:
    number = await chat.resident(0).proposes("建议把我家楼道的灯修一下，晚上太黑了")
    said = await chat.staff(SECRETARY).says(
        f"/tocase {number} service_request 属于报修 转网格员处理"
    )
    case_number = CASE.search(said.text).group(0)  # type: ignore[union-attr]
    proposal = _proposal(services, number)
    assert proposal.stage == "rejected" and proposal.reason == "属于报修 转网格员处理"
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == case_number)).one()
        assert case.resident_id == proposal.proposer_id and case.category == "facilities"
        assert case.proposal_id is None
    assert any(case_number in n.text and number in n.text for n in await chat.resident(0).inbox())


async def test_plain_rejection_tells_the_reason(chat: Chat, services: Services) -> None:
    number = await chat.resident(0).proposes("建议全市地铁延长运营时间")
    secretary = chat.staff(SECRETARY)
    said = await secretary.presses(f"pr:{_proposal(services, number).id}")
    assert said.replies[0].expects_text
    await secretary.says("不属于本社区议事范围")
    assert _proposal(services, number).stage == "rejected"
    assert any("不属于本社区议事范围" in n.text for n in await chat.resident(0).inbox())


async def test_one_co_signature_per_resident_and_withdrawal(chat: Chat, services: Services) -> None:
    number = await chat.resident(0).proposes("建议增设社区图书角")
    said = await chat.resident(0).says(f"/cosign {number}")
    assert "本人提出" in said.text
    resident = chat.resident(1)
    await resident.says(f"/cosign {number}")
    said = await resident.says(f"/cosign {number}")
    assert "已经附议过" in said.text
    assert _co_signs(services, number) == 1
    said = await resident.says(f"/withdraw {number}")
    assert "共 0 人附议" in said.text
    assert _co_signs(services, number) == 0
    said = await resident.says(f"/withdraw {number}")
    assert "阶段不能" in said.text
    said = await resident.says("/proposals")
    assert number in said.text
    assert _events(services, number) == ["collected", "co_signed", "co_sign_withdrawn"]


async def test_agenda_and_minutes_export_as_markdown_and_docx(
    chat: Chat, services: Services, tmp_path: Path
) -> None:
    secretary = chat.staff(SECRETARY)
    said = await secretary.says("/meeting collection 2026-11-28 19:00 中南社区活动室")
    meeting_id = int(re.search(r"编号 (\d+)", said.text).group(1))  # type: ignore[union-attr]
    first = await chat.resident(0).proposes("建议在中南小区增设健身器材")
    second = await chat.resident(1).proposes("建议开设社区老年食堂")
    await chat.resident(2).says(f"/cosign {second}")

    said = await secretary.says(f"/export {meeting_id}")
    assert said.text.startswith("中南社区居民议事会 意见收集会 议程")
    assert "|" not in said.text  # read as text in chat, not a Markdown table's pipes
    assert said.text.index(second) < said.text.index(first)  # most supported first
    assert said.text.endswith(f"/console/council/meetings/{meeting_id}/export.md")
    said = await secretary.says(f"/export {meeting_id} docx")
    # A link to the console's download, not a path on the server (tests/e2e/test_console_council.py
    # downloads it); the document behind it:
    assert said.text.endswith(f"/console/council/meetings/{meeting_id}/export.docx")
    with UnitOfWork(services.engine) as uow:
        row = uow.session.get(t.Meeting, meeting_id)
        assert row is not None
        out = tmp_path / "agenda.docx"
        out.write_bytes(export.docx_bytes(export.paper(uow.session, row, services.clock.now())))
    document = docx.Document(str(out))
    assert document.paragraphs[0].text == "中南社区居民议事会 意见收集会 议程"
    table = document.tables[0]
    assert [c.text for c in table.rows[0].cells] == [
        "序号",
        "编号",
        "议题",
        "提议人",
        "附议人数",
        "备注",
    ]
    assert [r.cells[1].text for r in table.rows[1:]] == [second, first]
    assert table.rows[1].cells[4].text == "1"

    services.clock.set(services.clock.now().replace(day=29))  # type: ignore[attr-defined]
    await secretary.says(f"/discuss {second}")
    await secretary.says(f"/reject {first} 已列入区里明年的改造计划")
    from bot.cli import main

    out = tmp_path / "minutes.docx"
    with _database(services):
        assert (
            main(
                [
                    "council",
                    "export",
                    str(meeting_id),
                    "--paper",
                    "minutes",
                    "--format",
                    "docx",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    document = docx.Document(str(out))
    assert document.paragraphs[0].text == "中南社区居民议事会 意见收集会 纪要"
    cells = {r.cells[1].text: r.cells[5].text for r in document.tables[0].rows[1:]}
    assert cells[second] == "转入议题讨论会"
    assert "已列入区里明年的改造计划" in cells[first]
    said = await secretary.says(f"/export {meeting_id} md")
    assert "纪要" in said.text and "转入议题讨论会" in said.text


class _database:
    """DATABASE_URL pointing at the services' database while the CLI runs."""

    def __init__(self, services: Services) -> None:
        self.url = services.settings.database_url

    def __enter__(self) -> None:
        import os

        os.environ["DATABASE_URL"] = self.url

    def __exit__(self, *exc: object) -> None:
        import os

        os.environ.pop("DATABASE_URL", None)


SECOND_COMMUNITY = """
version: 1
communities:
  - code: BY
    name: 碧云社区
    district: 云岩区
    committees:
      - code: BY-C1
        name: 碧云居委会
        grids:
          - code: BY-G01
            name: 第一网格
            households: 120
            buildings:
              - {code: BY-B01, name: 碧云小区1栋}
    people:
      - {id: by_wu, name: 吴刚, roles: [grid_worker, front_desk, mediator, director, secretary, duty_leader]}
    posts:
      - {code: BY-G01, name: 第一网格网格员, kind: grid, grid: BY-G01, a: by_wu}
      - {code: BY-front, name: 前台, kind: front_desk, a: by_wu}
      - {code: BY-med, name: 群众工作中心, kind: mediation, a: by_wu}
      - {code: BY-dir, name: 主任, kind: director, a: by_wu}
      - {code: BY-sec, name: 议事会秘书, kind: secretary, a: by_wu}
    duty_roster:
      weekly: {mon: by_wu, tue: by_wu, wed: by_wu, thu: by_wu, fri: by_wu, sat: by_wu, sun: by_wu}
    categories:
      - {code: other, name: 其他, post: BY-front, limits: {acknowledge_hours: 2, reply_days: 2, resolve_days: 7}}
    council:
      name: 碧云社区居民议事会
      secretary_post: BY-sec
    demo_residents:
      - {name: 钱程, building: BY-B01}
"""


async def _decided(chat: Chat, services: Services, decision_meeting: str) -> tuple[str, int]:
    """A proposal before a decision meeting set for `decision_meeting` (YYYY-MM-DD 19:00),
    co-signed by resident 1; its number and the meeting's id."""
    number = await chat.resident(0).proposes("建议在中南小区3栋旁边增设一组健身器材")
    await chat.resident(1).says(f"/cosign {number}")
    secretary = chat.staff(SECRETARY)
    said = await secretary.says(f"/meeting decision {decision_meeting} 19:00 社区会议室")
    meeting_id = int(re.search(r"编号 (\d+)", said.text).group(1))  # type: ignore[union-attr]
    await secretary.says(f"/discuss {number}")
    await secretary.says(f"/decide {number}")
    assert _proposal(services, number).decision_meeting_id == meeting_id
    return number, meeting_id


async def test_a_decision_before_its_meeting_is_refused_until_the_meeting_is_moved(
    chat: Chat, services: Services
) -> None:
    number, meeting_id = await _decided(chat, services, "2026-12-24")
    proposal_id = _proposal(services, number).id
    secretary = chat.staff(SECRETARY)
    await chat.resident(1).inbox()
    refusal = (f"提议 {number} 提交的议事决策会（会议编号 {meeting_id}）定于 2026-12-24 召开，尚未召开，"
               f"不能提前录入决定。")
    for attempt in (secretary.says(f"/adopt {number} service 2026-12-31 增设健身器材一组"),
                    secretary.says(f"/adopt {number}"), secretary.presses(f"pa:{proposal_id}"),
                    secretary.says(f"/notadopt {number} 场地不足"), secretary.presses(f"pna:{proposal_id}")):
        said = await attempt
        assert said.text.startswith(refusal) and f"/meeting move {meeting_id}" in said.text, said.text
        assert not said.replies[0].expects_text
    assert _proposal(services, number).stage == "decision"
    assert not [n for n in await chat.resident(1).inbox() if "通过" in n.text]
    with UnitOfWork(services.engine) as uow:
        assert uow.session.scalars(select(t.Case)).all() == []

    # The meeting was actually held today (the clock's, 2026-11-23): the secretary moves it, then decides.
    said = await secretary.says(f"/meeting move {meeting_id} 2026-11-23")
    assert said.text == f"会议（编号 {meeting_id}）已由 2026-12-24 改期为：议事决策会（11月23日(周一) 19:00，社区会议室）。"
    said = await secretary.says(f"/adopt {number} service 2026-12-31 增设健身器材一组")
    assert CASE.search(said.text), said.text
    assert _proposal(services, number).stage == "in_execution"
    assert any("已由议事决策会通过" in n.text for n in await chat.resident(1).inbox())
    assert _events(services, number)[-4:] == ["decision", "meeting_moved", "adopted", "in_execution"]
    for text in ("/meeting move 99 2026-11-23", f"/meeting move {meeting_id}", f"/meeting move {meeting_id} 12-03"):
        said = await secretary.says(text)
        assert "没有找到 99" in said.text or "/meeting move 会议编号 日期" in said.text, text
    # Past the id columns' range (PostgreSQL's 32-bit integer): no meeting, not a database error.
    said = await secretary.says("/meeting move 2147483648 2026-11-23")
    assert "没有找到 2147483648" in said.text, said.text
    said = await chat.staff("zhang_li").says(f"/meeting move {meeting_id} 2026-11-20")
    assert "只有议事会秘书" in said.text


async def test_the_proposers_evaluation_closes_the_execution_case_and_counts_once(
    chat: Chat, services: Services
) -> None:
    number, _ = await _decided(chat, services, "2026-12-09")
    services.clock.set(DECISION_EVENING)  # type: ignore[attr-defined]
    said = await chat.staff(SECRETARY).says(f"/adopt {number} service 2026-12-31 增设健身器材一组")
    case_number = CASE.search(said.text).group(0)  # type: ignore[union-attr]
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == case_number)).one()
        holder = uow.session.get(t.Person, case.holder_id)
        assert holder is not None
        holder_code, case_id = holder.code, case.id
    await chat.staff(holder_code).says(f"/resolve {case_id} 健身器材已安装完毕")
    proposer = chat.resident(0)
    asked = [n for n in await proposer.inbox() if "请对执行情况进行评议" in n.text]
    await proposer.presses(asked[0].action("满意"))
    await proposer.says("很好")

    said = await proposer.says(f"/status {case_number}")
    assert "已结束" in said.text and "已办结，待评价" not in said.text, said.text
    labels = [b.label for r in said.replies for row in r.buttons for b in row]
    assert "不满意" not in labels and "满意" not in labels
    # A rating button from the resolution notice, pressed now, has nothing left to rate.
    said = await proposer.presses(f"rate:{case_id}:u")
    assert said.text == f"工单 {case_number} 当前状态下不能这样操作。"
    with UnitOfWork(services.engine) as uow:
        executed = uow.session.get(t.Case, case_id)
        assert executed is not None
        assert (executed.state, executed.rating, executed.rating_comment, executed.reopen_count) == (
            "closed", "satisfied", "很好", 0)
        assert executed.closed_at is not None
    said = await chat.staff("lin_hui").says("/figures 社区 2026-12")
    assert "满意率 100.0%（1/1）" in said.text, said.text
