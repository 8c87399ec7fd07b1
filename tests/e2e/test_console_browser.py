"""The console in a real browser (Debian's chromium driven by playwright): a staff member signs
in with a password, filters the list, a new case appears without a reload, they act on it and
the resident is told; the list and the case page fit a 390 px phone. Writes the README's
screenshot, docs/console-cases.png."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from argon2 import PasswordHasher

from bot.settings import Settings
from handlers.registry import console_access
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.conftest import ROOT
from tests.e2e.conftest import Running, start

pytestmark = pytest.mark.slow

PASSWORD = "zhongnan-2026-desk"
NUMBER = re.compile(r"ZN-\d{8}-\d{4}")
SCREENSHOT = ROOT / "docs" / "console-cases.png"


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_access, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def web(sqlite_url: str, clock: FixedClock) -> Iterator[Running]:
    """The app on SQLite only: one browser run is enough, the PostgreSQL paths are the HTTP tests'."""
    served, services = start(Settings(database_url=sqlite_url, secret_key="e2e-secret", demo=True,
                                      send_idle_seconds=0.05), clock)
    running = Running(served.url, services)
    yield running
    for client in running.clients:
        client.close()
    served.stop()
    services.engine.dispose()


def _resident_reports(web: Running, who: str, text: str) -> tuple[httpx.Client, str]:
    client = web.client()
    client.post("/api/demo/persona", json={"who": who}).raise_for_status()
    said = client.post("/api/chat/send", json={"text": text}).json()["replies"][0]["text"]
    match = NUMBER.search(said)
    assert match, said
    return client, match.group(0)


def test_sign_in_filter_see_a_new_case_live_act_and_the_resident_is_told(web: Running, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    personas = httpx.get(f"{web.url}/api/demo/personas").json()
    resident_who = personas["residents"][0]["who"]
    resident, first = _resident_reports(web, resident_who, "楼道灯坏了三天了，晚上很黑")
    _, complaint = _resident_reports(web, resident_who, "邻居装修噪音太大，投诉")
    with UnitOfWork(web.services.engine) as uow:
        token = console_access.issue_password_link(uow.session, "xu_ting", web.services.clock.now())
        uow.commit()

    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{web.url}/console/password/{token}")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=again]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("密码已设置")
    page.fill("input[name=person]", "xu_ting")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/console/login'] button[type=submit]")
    expect(page.get_by_test_id("case-count")).to_have_text("共 2 件")

    # Filter: complaints only.
    page.select_option("select[name=kind]", "complaint")
    page.click("form[data-testid=filters] button[type=submit]")
    expect(page.get_by_test_id("case-row")).to_have_count(1)
    expect(page.get_by_test_id("case-row")).to_have_attribute("data-number", complaint)
    page.goto(f"{web.url}/console/cases?state=open")
    # A case filed now appears without a reload.
    _, third = _resident_reports(web, resident_who, "小区门口井盖松动了")
    expect(page.locator(f"[data-number='{third}']")).to_be_visible(timeout=15_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Act: the front desk replies from the case page; the resident hears it in the chat.
    page.click(f"a[href='/console/cases/{first}']")
    expect(page.get_by_test_id("timeline").get_by_test_id("timeline-entry")).to_have_count(2)
    page.fill("[data-testid=text-reply]", "明天上午电工上门更换灯泡")
    page.click("[data-testid=act-reply]")
    expect(page.get_by_test_id("done")).to_be_visible()
    expect(page.get_by_test_id("timeline")).to_contain_text("明天上午电工上门更换灯泡")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any("明天上午电工上门更换灯泡" in m["text"] for m in resident.get("/api/chat/inbox").json()["messages"]):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the resident was not told")

    # A phone: the list and the case page fit 390 px without sideways scrolling.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
    small = phone.new_page()
    for path, shown in (("/console/cases", "case-row"), (f"/console/cases/{first}", "timeline")):
        small.goto(f"{web.url}{path}")
        expect(small.get_by_test_id(shown).first).to_be_visible()
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    small.screenshot(path=str(SCREENSHOT.with_name("console-case-phone.png")), full_page=True)
    phone.close()

    # Signing out in the console signs the chat out too.
    page.click("[data-testid=logout]")
    expect(page).to_have_url(re.compile(r"/console/login"))
    assert page.evaluate("fetch('/api/session').then(r => r.status)") == 401
    context.close()
