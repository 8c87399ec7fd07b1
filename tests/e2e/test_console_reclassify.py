"""The console's Reclassify action on a case page: the same correction as the chat's."""

from __future__ import annotations

from sqlalchemy import select

from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running
from tests.e2e.test_console import as_persona, csrf_of, holder_of, report


def test_reclassify_from_the_case_page_moves_the_case(web: Running) -> None:
    _, number = report(web, "楼道灯坏了三天了")
    holder = as_persona(web, f"person:{holder_of(web, number)}")
    page = holder.get(f"/console/cases/{number}")
    assert 'data-testid="act-reclassify"' in page.text and "改分类" in page.text
    acted = holder.post(f"/console/cases/{number}/act",
                        data={"action": "reclassify", "kind": "service_request", "category": "civil_affairs",
                              "csrf": csrf_of(page)})
    assert acted.status_code == 303 and acted.headers["location"].endswith("done=reclassify")
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        post = uow.session.get(t.Post, case.post_id)
        assert (case.category, post.code if post else None) == ("civil_affairs", "civil_affairs")
    # The director reads the page of the moved case, the correction in its timeline.
    director = as_persona(web, "person:lin_hui").get(f"/console/cases/{number}")
    assert "改分类" in director.text and "民政专干" in director.text
    # An unknown category is refused and says so.
    again = as_persona(web, "person:lin_hui")
    page = again.get(f"/console/cases/{number}")
    refused = again.post(f"/console/cases/{number}/act",
                         data={"action": "reclassify", "category": "plumbing", "csrf": csrf_of(page)})
    assert refused.headers["location"].endswith("error=usage")
