"""The centre's console over real HTTP (no browser): sign-in, sessions shared with the web chat,
CSRF, lock-out, who sees which case and phone, the contact record and the downloads."""

from __future__ import annotations

import io
import re
import time

import httpx
import pytest
from argon2 import PasswordHasher
from openpyxl import load_workbook
from sqlalchemy import select

from bot.cli import main
from bot.web.auth import COOKIE
from handlers.cases import lifecycle
from handlers.registry import console_access
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PASSWORD = "zhongnan-2026-desk"


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its lightest: these tests are about the rules, not the hash's cost."""
    monkeypatch.setattr(console_access, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


def as_persona(web: Running, who: str) -> httpx.Client:
    client = web.client()
    client.post("/api/demo/persona", json={"who": who}).raise_for_status()
    return client


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def set_password(web: Running, code: str) -> None:
    with UnitOfWork(web.services.engine) as uow:
        token = console_access.issue_password_link(uow.session, code, web.services.clock.now())
        uow.commit()
    client = web.client()
    assert client.get(f"/console/password/{token}").status_code == 200
    client.post(f"/console/password/{token}", data={"password": PASSWORD, "again": PASSWORD})


def sign_in(web: Running, code: str, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
    client = web.client()
    form = client.get("/console/login")
    answer = client.post("/console/login", data={"person": code, "password": password, "csrf": csrf_of(form),
                                                 "next": "/console/cases"})
    return client, answer


def report(web: Running, text: str, resident: int = 0) -> tuple[httpx.Client, str]:
    personas = httpx.get(f"{web.url}/api/demo/personas").json()
    client = as_persona(web, personas["residents"][resident]["who"])
    said = client.post("/api/chat/send", json={"text": text}).json()["replies"][0]["text"]
    match = NUMBER.search(said)
    assert match, said
    return client, match.group(0)


def holder_of(web: Running, number: str) -> str:
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        person = uow.session.get(t.Person, case.holder_id)
        assert person is not None
        return person.code


def test_password_link_from_the_command_line_signs_in_and_sign_out_ends_console_and_chat(
        web: Running, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", web.services.settings.database_url)
    monkeypatch.setenv("PUBLIC_URL", web.url)
    assert main(["staff", "password-link", "zhang_li"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith(f"{web.url}/console/password/")
    assert main(["staff", "password-link", "nobody"]) == 2
    browser = web.client()
    path = link.removeprefix(web.url)
    assert "张丽" in browser.get(path).text
    refused = browser.post(path, data={"password": "short", "again": "short"})
    assert refused.status_code == 422
    done = browser.post(path, data={"password": PASSWORD, "again": PASSWORD})
    assert done.status_code == 303 and done.headers["location"].startswith("/console/login")
    assert browser.get(path).status_code == 404  # used once

    assert web.client().get("/console/cases").status_code == 303  # not signed in: to the form
    staff, answer = sign_in(web, "zhang_li")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/cases"
    page = staff.get("/console/cases")
    assert page.status_code == 200 and "张丽" in page.text
    # One session: the web chat knows the same person.
    assert staff.get("/api/session").json()["name"] == "张丽"
    stolen = staff.cookies[COOKIE]

    assert staff.post("/console/logout").status_code == 403  # no CSRF token
    assert staff.post("/console/logout", data={"csrf": csrf_of(page)}).status_code == 303
    assert staff.get("/api/session").status_code == 401
    assert staff.get("/console/cases").status_code == 303
    # The old cookie, kept by whoever copied it, is dead too: the session ended on the server.
    replay = web.client(cookies={COOKIE: stolen})
    assert replay.get("/api/session").status_code == 401
    assert replay.get("/console/cases").status_code == 303


def test_five_wrong_passwords_lock_the_person_out_even_with_the_right_one(web: Running) -> None:
    set_password(web, "xu_ting")
    for _ in range(console_access.LOCK_AFTER - 1):
        assert sign_in(web, "xu_ting", "not the password")[1].status_code == 401
    locked = sign_in(web, "xu_ting", "not the password")[1]
    assert locked.status_code == 429 and "15 分钟" in locked.text
    assert sign_in(web, "xu_ting")[1].status_code == 429
    # Another person is not affected.
    set_password(web, "lin_hui")
    assert sign_in(web, "lin_hui")[1].status_code == 303


def test_the_sign_in_form_refuses_a_post_without_its_token(web: Running) -> None:
    set_password(web, "zhang_li")
    client = web.client()
    answer = client.post("/console/login", data={"person": "zhang_li", "password": PASSWORD})
    assert answer.status_code == 403 and COOKIE not in client.cookies


def test_a_resident_gets_no_console(web: Running) -> None:
    resident, number = report(web, "楼道灯坏了三天了")
    assert resident.get("/console/cases").status_code == 403
    assert resident.get(f"/console/cases/{number}").status_code == 403
    assert resident.get("/console/cases.csv").status_code == 403


def test_a_worker_sees_only_their_cases_and_no_one_else_sees_the_phone(web: Running) -> None:
    _, number = report(web, "楼道灯坏了三天了，电话13911112222")
    holder = holder_of(web, number)
    with UnitOfWork(web.services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        outsider = next(p.code for p in uow.session.scalars(select(t.Person).order_by(t.Person.code))
                        if p.has_role("grid_worker") and not lifecycle.may_see(uow.session, case, person=p))

    mine = as_persona(web, f"person:{holder}")
    assert number in mine.get("/console/cases").text
    page = mine.get(f"/console/cases/{number}")
    assert page.status_code == 200 and "13911112222" in page.text
    assert page.text.count('data-testid="timeline-entry"') >= 2  # created, assigned

    other = as_persona(web, f"person:{outsider}")
    assert number not in other.get("/console/cases").text
    assert other.get(f"/console/cases/{number}").status_code == 404
    assert number not in other.get("/console/cases", params={"q": "13911112222"}).text
    assert "13911112222" not in other.get("/console/cases.csv").text

    # The director lists who saw the phone; nobody else may.
    assert mine.get("/console/contact-views").status_code == 403
    views = as_persona(web, "person:lin_hui").get("/console/contact-views")
    assert views.status_code == 200 and number in views.text and holder in views.text


def test_acting_needs_the_csrf_token_and_tells_the_resident(web: Running) -> None:
    resident, number = report(web, "楼道灯坏了三天了")
    holder = as_persona(web, f"person:{holder_of(web, number)}")
    page = holder.get(f"/console/cases/{number}")
    forged = holder.post(f"/console/cases/{number}/act", data={"action": "ack"})
    assert forged.status_code == 403
    with UnitOfWork(web.services.engine) as uow:
        assert uow.session.scalars(select(t.Case).where(t.Case.number == number)).one().state == "assigned"
    acted = holder.post(f"/console/cases/{number}/act", data={"action": "ack", "csrf": csrf_of(page)})
    assert acted.status_code == 303
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        notices = resident.get("/api/chat/inbox").json()["messages"]
        if any("已由" in n["text"] and number in n["text"] for n in notices):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the resident was not told")
    live = holder.get(f"/console/cases/{number}?partial=live").text
    assert "已签收，办理中" in live


def test_downloads_keep_the_chinese_for_excel(web: Running) -> None:
    _, number = report(web, "楼道灯坏了三天了")
    director = as_persona(web, "person:lin_hui")
    csv_file = director.get("/console/cases.csv", params={"state": "open"})
    assert csv_file.status_code == 200 and csv_file.content.startswith(b"\xef\xbb\xbf")
    text = csv_file.content.decode("utf-8-sig")
    assert text.startswith("编号,") and number in text and "楼道灯坏了三天了" in text
    xlsx = director.get("/console/cases.xlsx", params={"state": "open"})
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "编号" and values[1][0] == number and "楼道灯坏了三天了" in values[1]
    assert director.get("/console/cases.csv", params={"state": "nonsense"}).status_code == 422


def test_signing_out_of_the_web_chat_ends_the_console_session_too(web: Running) -> None:
    set_password(web, "zhang_li")
    staff, answer = sign_in(web, "zhang_li")
    assert answer.status_code == 303
    stolen = staff.cookies[COOKIE]
    assert staff.post("/api/logout").json() == {"ok": True}
    # A copy of the cookie kept from before the sign-out opens neither the chat nor the console.
    replay = web.client(cookies={COOKIE: stolen})
    assert replay.get("/api/session").status_code == 401
    assert replay.get("/console/cases").status_code in (303, 401)
