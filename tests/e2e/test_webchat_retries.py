"""The web chat's client ids over real HTTP: a message sent again with its id (the page retrying
after a lost answer) gets its first answer and files nothing new, on one process or two."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.settings import Settings
from bot.web import webchat
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.conftest import postgres_url, reset_postgres
from tests.e2e.conftest import Running, start
from tests.e2e.test_webchat import NUMBER, as_persona, history, reload


def count_cases(web: Running) -> int:
    with UnitOfWork(web.services.engine) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(t.Case)) or 0)


def lines_with(web: Running, client_id: str) -> int:
    with UnitOfWork(web.services.engine) as uow:
        return int(uow.session.scalar(
            select(func.count()).select_from(t.ChatLine).where(col(t.ChatLine.client_id) == client_id)) or 0)


def test_a_message_sent_again_with_its_id_gets_its_first_answer_and_files_nothing(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    first = resident.post("/api/chat/send", json={"text": "楼道灯坏了", "client_id": "m-1"})
    first.raise_for_status()
    assert NUMBER.search(first.json()["replies"][0]["text"])

    # The answer was lost; the page sends the message again, with the same id, after a reload.
    again = reload(web, resident).post("/api/chat/send", json={"text": "楼道灯坏了", "client_id": "m-1"})
    assert again.status_code == 200
    assert [(r["text"], r["buttons"]) for r in again.json()["replies"]] == \
        [(r["text"], r["buttons"]) for r in first.json()["replies"]]
    assert count_cases(web) == 1
    said = [m for m in history(resident)["messages"] if m["kind"] == "said"]
    assert [m["text"] for m in said] == ["楼道灯坏了"]

    # A new message (a new id) with the same words is a message of its own, and so is another
    # person's message that happens to carry the same id.
    resident.post("/api/chat/send", json={"text": "楼道灯坏了", "client_id": "m-2"}).raise_for_status()
    neighbour = as_persona(web, "building:ZN-B02")
    theirs = neighbour.post("/api/chat/send", json={"text": "电梯坏了", "client_id": "m-1"}).json()
    assert NUMBER.search(theirs["replies"][0]["text"])
    assert count_cases(web) == 3


def test_a_pressed_button_sent_again_with_its_id_is_pressed_once(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    number = NUMBER.search(resident.post("/api/chat/send", json={"text": "楼道灯坏了"})
                           .json()["replies"][0]["text"]).group(0)  # type: ignore[union-attr]
    worker = as_persona(web, "person:zhang_li")
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(col(t.Case.number) == number)).one()
    ack = {"action": f"ack:{case.id}", "label": "签收", "client_id": "press-1"}
    first = worker.post("/api/chat/send", json=ack).json()
    again = worker.post("/api/chat/send", json=ack).json()
    assert again["replies"][0]["text"] == first["replies"][0]["text"]
    with UnitOfWork(web.services.engine) as uow:
        acks = uow.session.scalar(select(func.count()).select_from(t.CaseEvent).where(
            col(t.CaseEvent.case_id) == case.id, col(t.CaseEvent.action) == "acknowledged"))
    assert acks == 1


@pytest.mark.parametrize("client_id", ["", "x" * 65, "消息一", "a\nb", "tab\there", 7])
def test_a_client_id_that_is_not_1_to_64_printable_ascii_is_refused(web: Running, client_id: Any) -> None:
    resident = as_persona(web, "building:ZN-B01")
    refused = resident.post("/api/chat/send", json={"text": "楼道灯坏了", "client_id": client_id})
    assert refused.status_code == 422 and "client_id" in refused.text
    assert history(resident)["messages"] == [] and count_cases(web) == 0


def test_the_longest_client_id_is_accepted(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    longest = "~ !" + "x" * 61
    resident.post("/api/chat/send", json={"text": "楼道灯坏了", "client_id": longest}).raise_for_status()
    assert lines_with(web, longest) == 1


def test_the_same_message_sent_twice_at_once_is_handled_once(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    cookies = dict(resident.cookies)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda _: web.client(cookies=cookies).post(
                "/api/chat/send", json={"text": "楼道灯坏了", "client_id": "twice"}),
            range(2)))
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["replies"][0]["text"] == answers[1].json()["replies"][0]["text"]
    assert count_cases(web) == 1 and lines_with(web, "twice") == 1


def test_two_processes_that_take_the_same_message_at_once_file_it_once(
        clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes that do not share a lock (as when Redis lost it): both handle the message,
    the database's unique index lets one commit, and the other answers with the first's reply."""
    url = postgres_url()  # SQLite has one writer, so two turns cannot overlap there
    reset_postgres(url)
    settings = Settings(database_url=url, secret_key="e2e-secret", demo=True, send_idle_seconds=0.05)
    one, one_services = start(settings, clock)
    two, two_services = start(settings, clock)
    both_checked = threading.Barrier(2, timeout=10)
    checks = []
    real = webchat.chat_history.answered_turn

    def check_then_wait(*args: Any, **kwargs: Any) -> Any:
        # Both find no earlier turn before either commits, then both go on to handle it.
        found = real(*args, **kwargs)
        checks.append(found)
        if len(checks) <= 2:
            both_checked.wait()
        return found

    monkeypatch.setattr(webchat.chat_history, "answered_turn", check_then_wait)
    try:
        signed_in = httpx.post(f"{one.url}/api/demo/persona", json={"who": "building:ZN-B01"})
        cookies = dict(signed_in.cookies)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(
                lambda base: httpx.post(f"{base}/api/chat/send", cookies=cookies, timeout=20,
                                        json={"text": "楼道灯坏了", "client_id": "both"}),
                [one.url, two.url]))
        assert [a.status_code for a in answers] == [200, 200]
        texts = [a.json()["replies"][0]["text"] for a in answers]
        assert NUMBER.search(texts[0]) and texts[0] == texts[1]
        with UnitOfWork(one_services.engine) as uow:
            assert uow.session.scalar(select(func.count()).select_from(t.Case)) == 1
            assert uow.session.scalar(select(func.count()).select_from(t.ChatLine).where(
                col(t.ChatLine.direction) == "in")) == 1
    finally:
        one.stop()
        two.stop()
        one_services.engine.dispose()
        two_services.engine.dispose()
