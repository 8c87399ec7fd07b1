"""The figures the centre is judged on, as the director and a grid worker read them in chat and
on the command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from sqlalchemy import select

from bot.app import Services
from bot.cli import main as cli_main
from handlers import periods
from handlers.errors import BadInput
from handlers.figures import tally
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
TODAY = dt.date(2026, 11, 23)


def bj(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone(dt.timedelta(hours=8))).astimezone(dt.UTC)  # type: ignore[misc]


def case_of(services: Services, number: str) -> t.Case:
    with UnitOfWork(services.engine) as uow:
        return uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()


async def report(chat: Chat, who: int, text: str) -> t.Case:
    said = await chat.resident(who).says(text)
    match = NUMBER.search(said.text)
    assert match, said.text
    return case_of(chat.services, match.group(0))


async def a_month_of_work(chat: Chat, clock: FixedClock) -> tuple[t.Case, t.Case, t.Case]:
    """Monday 2026-11-23, Beijing time:
    - case A: acknowledged at once, resolved, rated 不满意 (reopened), resolved again, rated 满意;
    - case B: nobody acknowledges it, and its hour passes;
    - case C: reported at 11:30, still inside its hour.
    """
    resident = chat.resident(0)
    a = await report(chat, 0, "3单元楼道的灯坏了三天了")
    worker = chat.staff("zhang_li")
    await worker.says(f"/ack {a.id}")
    await worker.says(f"/resolve {a.id} 已换灯泡")
    await resident.presses(f"rate:{a.id}:u")
    await worker.says(f"/ack {a.id}")
    await worker.says(f"/resolve {a.id} 整条线路已检修")
    await resident.presses(f"rate:{a.id}:s")
    b = await report(chat, 1, "小区门口的垃圾三天没人清运了")
    clock.set(bj(2026, 11, 23, 11, 30))
    c = await report(chat, 6, "The stairwell light is broken")
    return a, b, c


async def test_the_director_reads_the_four_rates_and_the_overdue_count(
        chat: Chat, services: Services, clock: FixedClock) -> None:
    a, b, _ = await a_month_of_work(chat, clock)
    assert case_of(services, a.number).state == "closed" and case_of(services, a.number).reopen_count == 1

    said = await chat.staff("lin_hui").says("/figures community")
    lines = said.text.splitlines()
    assert lines[0] == "中南社区 工单指标（2026-11-01 至 2026-11-23 派单，按社区）"
    # A answered in time; B past its hour without an answer; C still inside its hour counts in
    # neither. Only A is resolved; both of A's ratings count, the 不满意 too.
    assert ("中南社区：3 件｜响应率 50.0%（1/2）｜按时办结率 100.0%（1/1）｜解决率 33.3%（1/3）"
            "｜满意率 50.0%（1/2）｜超时 1 件") in lines

    report_ = chat.staff("lin_hui")
    by_worker = (await report_.says("/figures 工作人员 2026-11")).text
    assert "2026-11-01 至 2026-11-30" in by_worker and "按工作人员" in by_worker
    assert "张丽：1 件｜响应率 100.0%（1/1）" in by_worker
    b_holder = case_of(services, b.number).holder_id
    with UnitOfWork(services.engine) as uow:
        b_name = uow.session.get(t.Person, b_holder).name  # type: ignore[union-attr]
    assert f"{b_name}：1 件｜响应率 0.0%（0/1）｜按时办结率 —｜解决率 0.0%（0/1）｜满意率 —｜超时 1 件" in by_worker

    assert "没有派单的工单" in (await report_.says("/figures 2026-10")).text
    assert "用法" in (await report_.says("/figures 2026-13")).text


async def test_a_grid_worker_sees_only_their_own_figures(chat: Chat, services: Services, clock: FixedClock) -> None:
    await a_month_of_work(chat, clock)
    said = (await chat.staff("zhang_li").says("/figures grid")).text
    assert said.startswith("张丽 的工单指标（2026-11-01 至 2026-11-23 派单）")
    assert "张丽：1 件｜响应率 100.0%（1/1）｜按时办结率 100.0%（1/1）｜解决率 100.0%（1/1）｜满意率 50.0%（1/2）" in said
    assert "中南社区" not in said

    # 杨涛's one case is still inside its first hour: no response rate yet, nothing overdue.
    other = (await chat.staff("yang_tao").says("/figures")).text
    assert "杨涛：1 件｜响应率 —｜按时办结率 —｜解决率 0.0%（0/1）｜满意率 —｜超时 0 件" in other


async def test_grids_committees_and_the_command_line_agree(
        chat: Chat, services: Services, clock: FixedClock, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c = await a_month_of_work(chat, clock)
    with UnitOfWork(services.engine) as uow:
        community = uow.session.scalars(select(t.Community)).one()
        by = {grouping: tally.figures(uow.session, community, dt.date(2026, 11, 1), TODAY, grouping, clock.now())
              for grouping in tally.GROUPINGS}
        grid_of = {case.number: uow.session.get(t.Grid, case_of(services, case.number).grid_id)
                   for case in (a, b, c)}
    # Every grouping splits the same cases and adds up to the same total.
    for report_ in by.values():
        assert report_.total.as_dict() | {"name": None} == by["community"].total.as_dict() | {"name": None}
        assert sum(r.cases for r in report_.rows) == 3
    grids = {r.name: r.cases for r in by["grid"].rows}
    for grid in grid_of.values():
        assert grid is not None and grids[grid.name] >= 1
    assert sum(r.overdue for r in by["committee"].rows) == 1

    # The command line reads the same database through the settings.
    monkeypatch.setenv("DATABASE_URL", services.settings.database_url)
    monkeypatch.setattr("storage.clock.SystemClock.now", lambda self: clock.now())
    assert cli_main(["figures", "--by", "worker", "--period", "2026-11", "--json"]) == 0
    [printed] = json.loads(capsys.readouterr().out)
    assert printed["total"]["responded"] == {"done": 1, "of": 2, "rate": 0.5}
    assert printed["total"]["ratings"] == {"satisfied": 1, "unsatisfied": 1}
    assert cli_main(["figures", "--period", "2026-13"]) == 2
    assert "not a period" in capsys.readouterr().err

    # The same as a spreadsheet: a header, a row per committee, the total.
    assert cli_main(["figures", "--by", "committee", "--period", "2026-11", "--csv"]) == 0
    sheet = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert sheet[0] == ["中南社区", "2026-11-01", "2026-11-30"]
    assert sheet[1][:5] == ["居委会", "工单数", "响应", "响应 应计", "响应 %"] and sheet[1][-1] == "超时"
    assert sheet[-1][:5] == ["合计", "3", "1", "2", "50.0"] and sheet[-1][-1] == "1"
    assert sum(int(line[1]) for line in sheet[2:-1]) == 3


def test_periods_read_as_people_write_them() -> None:
    assert periods.period("", TODAY) == (dt.date(2026, 11, 1), TODAY)
    assert periods.period("2026-02", TODAY) == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert periods.period("2026-12", TODAY) == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    assert periods.period("2026", TODAY) == (dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert periods.period("2026-11-01..2026-11-15", TODAY) == (dt.date(2026, 11, 1), dt.date(2026, 11, 15))
    assert periods.period("2026-11-05", TODAY) == (dt.date(2026, 11, 5), dt.date(2026, 11, 5))
    assert periods.period("2026-09 .. 2026-11", TODAY) == (dt.date(2026, 9, 1), dt.date(2026, 11, 30))
    assert periods.period("2025..2026-06", TODAY) == (dt.date(2025, 1, 1), dt.date(2026, 6, 30))
    for bad in ("2026-11-15..2026-11-01", "last week", "2026-13", "0001", "1999-12..2026-01", "9999-12-31",
                "2026-11-01..", "..", "2026-1", "x" * 10_000):
        with pytest.raises(BadInput):
            periods.period(bad, TODAY)
    assert tally.read_request("网格 2026-10", TODAY) == ("grid", dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert tally.read_request("2026 worker", TODAY)[0] == "worker"
