"""The front desk's queue (/console/triage) over real HTTP: a returned case waits there, one
step routes it through the chat's transfer (the resident and the new holder are told), and only
the front desk and the director get in."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import select

from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running
from tests.e2e.test_console import as_persona, csrf_of, holder_of, report


def _told(client: httpx.Client, words: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(words in m["text"] for m in client.get("/api/chat/inbox").json()["messages"]):
            return True
        time.sleep(0.05)
    return False


def test_a_returned_case_is_routed_in_one_step_and_everyone_is_told(web: Running) -> None:
    resident, number = report(web, "楼道灯坏了三天了")
    worker = as_persona(web, f"person:{holder_of(web, number)}")
    page = worker.get(f"/console/cases/{number}")
    assert worker.post(f"/console/cases/{number}/act",
                       data={"action": "return", "text": "不是本网格的楼栋", "csrf": csrf_of(page)}).status_code == 303
    assert worker.get("/console/triage").status_code == 403  # a grid worker has no queue

    desk = as_persona(web, "person:xu_ting")
    queue = desk.get("/console/triage")
    assert queue.status_code == 200 and f'data-number="{number}"' in queue.text
    with UnitOfWork(web.services.engine) as uow:
        target = uow.session.scalars(select(t.Post).where(t.Post.code == "G02")).one()
        new_holder = uow.session.get(t.Person, target.a_holder_id)
        assert new_holder is not None
        target_name, new_holder_id = target.name, new_holder.id

    assert desk.post(f"/console/triage/{number}", data={"post": "G02"}).status_code == 403  # no CSRF token
    routed = desk.post(f"/console/triage/{number}", data={"post": "G02", "note": "第二网格的楼", "csrf": csrf_of(queue)})
    assert routed.status_code == 303
    after = desk.get(routed.headers["location"])
    assert number in after.text and target_name in after.text
    assert f'data-number="{number}"' not in after.text  # out of the queue
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        assert (case.state, case.holder_id) == ("transferred", new_holder_id)
        to_holder = uow.session.scalars(select(t.Outbox).where(t.Outbox.case_id == case.id,
                                                               t.Outbox.person_id == new_holder_id)).all()
        assert to_holder  # the case card went to the new holder, as after /transfer in chat
    assert _told(resident, target_name)

    # Routed once, it cannot be routed again to where it is: the page says so.
    again = desk.post(f"/console/triage/{number}", data={"post": "G02", "csrf": csrf_of(queue)})
    assert again.status_code == 303 and "failed=" in again.headers["location"]
    assert desk.post(f"/console/triage/{number}", data={"post": "NOPE", "csrf": csrf_of(queue)}).status_code == 404


def test_the_director_has_the_queue_and_a_resident_does_not(web: Running) -> None:
    resident, _ = report(web, "楼道灯坏了三天了")
    assert as_persona(web, "person:lin_hui").get("/console/triage").status_code == 200
    assert resident.get("/console/triage").status_code == 403
    nav = as_persona(web, "person:xu_ting").get("/console/cases").text
    assert 'href="/console/triage"' in nav and 'href="/console/council"' not in nav
