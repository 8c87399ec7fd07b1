"""`griddesk demo`: a short scripted scenario through the real pipeline, printed as people see it.

A resident reports a broken stairwell light → a case → the grid worker acknowledges → transfers it
to the facilities specialist → who replies and resolves → the resident rates it → the centre
director reads the month's figures. It runs on a
throwaway SQLite database with the example community, so it touches nothing else.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlmodel import col

from bot.app import Services, build_services
from bot.channels.base import Incoming, Reply
from bot.settings import Settings
from handlers.notify import ensure_identity
from storage import tables as t
from storage.unit_of_work import UnitOfWork

RULE = "─" * 60


def _print_replies(who: str, said: str, replies: list[Reply]) -> None:
    print(f"\n{RULE}\n{who}\n  > {said}")
    for reply in replies:
        for line in reply.text.splitlines():
            print(f"  < {line}")
        for row in reply.buttons:
            print("    " + "  ".join(f"[{b.label}]" for b in row))


def _print_notices(services: Services, after: int) -> int:
    with UnitOfWork(services.engine) as uow:
        rows = uow.session.scalars(
            select(t.Outbox).where(col(t.Outbox.id) > after).order_by(col(t.Outbox.id))).all()
        for row in rows:
            if row.person_id:
                person = uow.session.get(t.Person, row.person_id)
                who = f"{person.name}（工作人员）" if person else row.address
            else:
                resident = uow.session.get(t.Resident, row.resident_id)
                who = f"{resident.name}（居民）" if resident else row.address
            print(f"\n  ✉ {who} 收到 [{row.channel}]:")
            for line in row.text.splitlines():
                print(f"    {line}")
            for brow in row.buttons:
                print("    " + "  ".join(f"[{b['label']}]" for b in brow))
            after = row.id or after
    return after


async def _scenario(services: Services) -> None:
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        resident = uow.session.scalars(
            select(t.Resident).where(col(t.Resident.demo).is_(True))
            .order_by(col(t.Resident.id))).first()
        assert resident is not None, "the example community has demo residents"
        ensure_identity(uow.session, "web", f"resident:{resident.id}", now, resident=resident)
        uow.commit()
        resident_address = f"resident:{resident.id}"
        resident_name = resident.name

    async def say_as(address: str, who: str, text: str = "", action: str | None = None,
                     shown: str | None = None) -> list[Reply]:
        replies = await services.pipeline.handle(Incoming("web", address, text=text, action=action))
        _print_replies(who, shown or text or str(action), replies)
        await services.sender.drain()
        return replies

    printed = 0
    await say_as(resident_address, f"居民 {resident_name}", "3单元楼道的灯坏了好几天了，晚上上下楼太黑，老人差点摔倒")
    printed = _print_notices(services, printed)

    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).order_by(col(t.Case.id).desc())).first()
        assert case is not None
        worker = uow.session.get(t.Person, case.holder_id)
        assert worker is not None
        ensure_identity(uow.session, "web", f"person:{worker.code}", now, person=worker)
        target = uow.session.scalars(
            select(t.Post)
            .where(col(t.Post.kind) == "specialist", col(t.Post.id) != case.post_id)
            .order_by(col(t.Post.code))
        ).all()
        facilities = next((p for p in target if "城" in p.name or "市政" in p.name or "设施" in p.name), target[0])
        specialist = uow.session.get(t.Person, facilities.a_holder_id)
        assert specialist is not None
        ensure_identity(uow.session, "web", f"person:{specialist.code}", now, person=specialist)
        uow.commit()
        case_id, number = case.id, case.number
        worker_address, worker_name = f"person:{worker.code}", worker.name
        specialist_address, specialist_name, post_code = f"person:{specialist.code}", specialist.name, facilities.code

    await say_as(worker_address, f"网格员 {worker_name}", action=f"ack:{case_id}", shown="[签收]")
    printed = _print_notices(services, printed)
    await say_as(worker_address, f"网格员 {worker_name}", action=f"trf:{case_id}:{post_code}", shown="[转办]")
    await say_as(worker_address, f"网格员 {worker_name}", "线路老化，需要专业电工更换，请市政协助")
    printed = _print_notices(services, printed)
    await say_as(specialist_address, f"专干 {specialist_name}", f"/reply {number} 已安排电工明天上午更换楼道灯和线路")
    printed = _print_notices(services, printed)
    await say_as(specialist_address, f"专干 {specialist_name}", f"/resolve {number} 楼道灯和线路已全部更换")
    printed = _print_notices(services, printed)
    await say_as(resident_address, f"居民 {resident_name}", action=f"rate:{case_id}:s", shown="[满意]")
    _print_notices(services, printed)

    with UnitOfWork(services.engine) as uow:
        post = uow.session.scalars(select(t.Post).where(col(t.Post.kind) == "director")).first()
        director = uow.session.get(t.Person, post.a_holder_id) if post else None
        assert director is not None, "the example community has a centre director"
        ensure_identity(uow.session, "web", f"person:{director.code}", now, person=director)
        uow.commit()
        director_address, director_name = f"person:{director.code}", director.name
    await say_as(director_address, f"服务中心主任 {director_name}", "/figures 人员")
    print(f"\n{RULE}")


def run_demo() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'demo.db'}", redis_url=None, demo=True)
        services = build_services(settings)
        asyncio.run(_scenario(services))
        services.engine.dispose()
    return 0
